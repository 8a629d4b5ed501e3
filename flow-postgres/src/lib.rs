//! The PostgreSQL store for flow: any number of worker processes on any number of
//! machines share one database. Runs are claimed with `FOR UPDATE SKIP LOCKED`
//! under leases with a fencing token, each checkpoint is one statement, and
//! wake-ups come through LISTEN/NOTIFY with a polling fallback in the worker.

mod cancel;
mod concurrency;
mod finish;
mod groups;
mod held;
mod invoke;
mod migrate;
mod nodelay;
mod send;
mod signals;
mod store;
mod url;
mod versions;
mod waits;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use flow_core::Error;

pub use migrate::migrate;
#[doc(hidden)]
pub use nodelay::tcp_nodelay_of_local_port;
pub use send::send_in;
pub use url::redact;

/// The channel `send` notifies and workers listen on.
pub(crate) const WAKEUP_CHANNEL: &str = "flow_wakeup";

/// A flow store in a PostgreSQL database. Cheap to clone: clones share the pool
/// and the connections held for hot statements.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Connections kept open for the statements a worker and a client run one
    /// after another (claims, commits, sends), which skip the pool's pings.
    held: std::sync::Arc<held::Held>,
    /// Passes announced finishes to this store's waiting clients.
    listening: std::sync::Arc<finish::Listening>,
    described: std::sync::Arc<str>,
    /// The send-time rules of the functions, as this store's sends last loaded
    /// them (flow_core::catalog).
    catalog: std::sync::Arc<flow_core::catalog::CatalogCache>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.described)
            .finish_non_exhaustive()
    }
}

/// Connection settings for [`PgStore`].
#[derive(Clone, Debug)]
pub struct PgStoreOptions {
    /// Pool size (default 10). Beside the pool a store holds up to three
    /// connections for its hot statements (a worker's claims and commits, a
    /// client's sends), and a worker opens one connection for LISTEN and, on a
    /// thread of its own, a store for lease renewals (see `Store::detached`). A
    /// store whose client has waited for a run keeps one more connection open,
    /// listening for finishes.
    pub max_connections: u32,
    /// How long to wait for a connection (default 10 s).
    pub acquire_timeout: Duration,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        PgStoreOptions {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

impl PgStore {
    /// Connects to `url` and brings flow's schema up to date.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(url, PgStoreOptions::default()).await
    }

    /// [`PgStore::connect`] with settings.
    pub async fn connect_with(url: &str, options: PgStoreOptions) -> Result<Self, Error> {
        let described = redact(url);
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::Config(format!(
                "`{described}` is not a PostgreSQL URL: it must start with postgres:// or postgresql://"
            )));
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .after_connect(|conn, _| Box::pin(nodelay::disable_nagle(conn)))
            .connect(url)
            .await
            .map_err(|e| Error::database(format!("could not connect to {described}: {e}")))?;
        Self::from_pool_described(pool, described).await
    }

    /// A store on an existing pool (the application's own), migrated.
    pub async fn from_pool(pool: PgPool) -> Result<Self, Error> {
        let options = pool.connect_options();
        let described = format!(
            "postgres://{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        );
        Self::from_pool_described(pool, described).await
    }

    async fn from_pool_described(pool: PgPool, described: String) -> Result<Self, Error> {
        let applied = migrate(&pool).await?;
        if !applied.is_empty() {
            tracing::info!(database = %described, versions = ?applied, "applied flow migrations");
        }
        Ok(PgStore::on(pool, described.into()))
    }

    fn on(pool: PgPool, described: std::sync::Arc<str>) -> PgStore {
        let held = held::Held::new((*pool.connect_options()).clone());
        PgStore {
            pool,
            held,
            listening: std::sync::Arc::default(),
            described,
            catalog: std::sync::Arc::default(),
        }
    }

    /// The pool, for the application's own queries and transactions.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// A database error as flow reports it: one line, no password; transient when
/// the same statement may pass if tried again.
pub(crate) fn db_error(error: sqlx::Error) -> Error {
    if is_transient(&error) {
        Error::unavailable(error)
    } else {
        Error::database(error)
    }
}

/// Lost connections and the SQLSTATEs that mean "try again": serialization
/// failures and deadlocks (class 40), connection exceptions (08), insufficient
/// resources (53), operator intervention such as a restart (57P01-57P03).
fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("40")
                || code.starts_with("08")
                || code.starts_with("53")
                || matches!(&*code, "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}
