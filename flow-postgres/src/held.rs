//! Connections the store holds for its hot statements.
//!
//! sqlx's pool pings the server when a connection is acquired and again when it is
//! released, so a statement run through the pool costs three round trips and
//! nearly twice the server's work of the statement alone. A worker's claim loop,
//! its committer and a client's sends run one statement after another, so the
//! store keeps a few connections of its own ([`HELD`]) and lends each statement
//! one that is free; only when all are busy does a statement go through the pool.
//!
//! A held connection is checked with a ping only after it was idle for a second
//! (a restart or an idle timeout may have closed it meanwhile). One that fails
//! with a transient error, or whose statement was cancelled halfway (its future
//! dropped), is closed; the next statement opens a new one. A statement that is
//! safe to repeat is tried once more on a new connection after a transient
//! failure (see [`on_conn!`]).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool, Postgres};
use tokio::sync::{Mutex, MutexGuard};

use flow_core::Error;

use crate::db_error;

/// Connections held per store: a worker's claim loop and committer and a client
/// each find one free.
pub(crate) const HELD: usize = 3;

/// A held connection idle for longer is pinged before its next statement.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The held connections of a store (and its clones).
pub(crate) struct Held {
    options: PgConnectOptions,
    slots: [Mutex<Option<Slot>>; HELD],
}

pub(crate) struct Slot {
    conn: PgConnection,
    used: Instant,
}

impl Held {
    pub fn new(options: PgConnectOptions) -> Arc<Held> {
        Arc::new(Held {
            // The hot statements find their rows through primary keys and the
            // queue's index in order; estimates of a queue table are wrong by orders
            // of magnitude between analyzes (a fresh burst of runs reads as a handful
            // of rows), and with them the planner picks bitmap scans that fetch and
            // sort every queued run (and every dead index entry) to claim three.
            // Only these connections, which run nothing but flow's statements. A
            // scan the planner then cannot avoid (of a tiny table) is costed so high
            // that JIT compilation would kick in and take seconds: these statements
            // are short and never gain from JIT, so it is off.
            options: options.options([
                ("enable_bitmapscan", "off"),
                ("enable_seqscan", "off"),
                ("jit", "off"),
            ]),
            slots: std::array::from_fn(|_| Mutex::new(None)),
        })
    }

    /// A connection for one statement or transaction: a free held one (opened or
    /// checked as needed), else one from `pool`.
    pub async fn lend<'a>(&'a self, pool: &PgPool) -> Result<Lent<'a>, Error> {
        for slot in &self.slots {
            let Ok(mut guard) = slot.try_lock() else {
                continue;
            };
            if let Some(held) = guard.as_mut()
                && held.used.elapsed() > IDLE_CHECK
                && let Err(e) = held.conn.ping().await
            {
                tracing::debug!(error = %e, "a held connection did not answer its ping; opening another");
                *guard = None;
            }
            if guard.is_none() {
                let mut conn = PgConnection::connect_with(&self.options)
                    .await
                    .map_err(db_error)?;
                crate::nodelay::disable_nagle(&mut conn)
                    .await
                    .map_err(db_error)?;
                *guard = Some(Slot {
                    conn,
                    used: Instant::now(),
                });
            }
            return Ok(Lent::Held {
                slot: guard,
                finished: false,
            });
        }
        Ok(Lent::Pooled(pool.acquire().await.map_err(db_error)?))
    }
}

/// A connection lent for one statement or transaction; hand the result to
/// [`Lent::finish`]. Dropped without it (the statement's future was cancelled),
/// a held connection is closed: it may be halfway through a reply.
pub(crate) enum Lent<'a> {
    Held {
        slot: MutexGuard<'a, Option<Slot>>,
        finished: bool,
    },
    Pooled(PoolConnection<Postgres>),
}

impl Lent<'_> {
    /// Keeps the connection for the next statement unless the result says it may
    /// be broken (any transient error: a lost connection, a restart, a failover).
    pub fn finish<T>(mut self, result: Result<T, Error>) -> Result<T, Error> {
        if let Lent::Held { slot, finished } = &mut self {
            match &result {
                Err(e) if e.is_transient() => **slot = None,
                _ => {
                    if let Some(held) = slot.as_mut() {
                        held.used = Instant::now();
                    }
                }
            }
            *finished = true;
        }
        result
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Lent::Held {
            slot,
            finished: false,
        } = self
        {
            **slot = None;
        }
    }
}

impl Deref for Lent<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Lent::Held { slot, .. } => &slot.as_ref().expect("a lent slot holds a connection").conn,
            Lent::Pooled(conn) => conn,
        }
    }
}

impl DerefMut for Lent<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Lent::Held { slot, .. } => {
                &mut slot.as_mut().expect("a lent slot holds a connection").conn
            }
            Lent::Pooled(conn) => conn,
        }
    }
}

/// Runs `$body`, a future of `Result<T, Error>` using `$conn: &mut PgConnection`,
/// on a connection lent by `$store`. With `repeat` true (the statement is safe to
/// run twice: a read, a fenced or idempotent write) a transient failure is tried
/// once more, on a new connection.
macro_rules! on_conn {
    ($store:expr, repeat = $repeat:expr, |$conn:ident| $body:expr) => {{
        let mut again: bool = $repeat;
        loop {
            let mut lent = $store.held.lend(&$store.pool).await?;
            let result = {
                let $conn: &mut sqlx::PgConnection = &mut lent;
                $body.await
            };
            match lent.finish(result) {
                Err(e) if again && e.is_transient() => {
                    tracing::debug!(error = %e, "a statement failed transiently; trying it once more");
                    again = false;
                }
                result => break result,
            }
        }
    }};
}

pub(crate) use on_conn;
