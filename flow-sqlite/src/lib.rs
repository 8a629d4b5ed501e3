//! The embedded SQLite store for flow: one file in WAL mode, no server to run. The
//! same semantics as PostgreSQL, with one process working on a file: every statement
//! goes through one connection (SQLite has one writer anyway), and wake-ups are
//! in-process (there is no LISTEN/NOTIFY). Pick PostgreSQL for several worker
//! processes or machines.

mod concurrency;
mod groups;
mod invoke;
mod signals;
mod store;
mod waits;

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Executor, SqlitePool};
use tokio::sync::broadcast;

use flow_core::Error;
use flow_core::store::{Finishes, Wakeup};

/// A flow store in an SQLite file. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    wakeups: Arc<broadcast::Sender<Wakeup>>,
    /// Finished runs, announced to the clients of this process that wait for
    /// them (a client in another process polls).
    finishes: Finishes,
    described: Arc<str>,
}

/// Migrations, in order. Append only.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (
        2,
        include_str!("../migrations/0002_structured_failures.sql"),
    ),
    (3, include_str!("../migrations/0003_blocked_runs.sql")),
    (4, include_str!("../migrations/0004_waits.sql")),
    (5, include_str!("../migrations/0005_system_events.sql")),
    (6, include_str!("../migrations/0006_invoke.sql")),
    (
        7,
        include_str!("../migrations/0007_cancel_on_and_timeouts.sql"),
    ),
    (8, include_str!("../migrations/0008_signals.sql")),
    (9, include_str!("../migrations/0009_pause.sql")),
    (10, include_str!("../migrations/0010_concurrency.sql")),
    (11, include_str!("../migrations/0011_idempotency.sql")),
    (12, include_str!("../migrations/0012_catalog_versions.sql")),
    (13, include_str!("../migrations/0013_singleton.sql")),
    (14, include_str!("../migrations/0014_throttle.sql")),
    (15, include_str!("../migrations/0015_run_concurrency.sql")),
    (16, include_str!("../migrations/0016_rate_limit.sql")),
    (17, include_str!("../migrations/0017_fair_claims.sql")),
    (18, include_str!("../migrations/0018_event_groups.sql")),
    (19, include_str!("../migrations/0019_function_triggers.sql")),
];

/// Stores opened in this process, by file, so that every store on one file shares
/// its wake-ups (a client's send wakes the worker).
static NOTIFIERS: Mutex<Option<HashMap<PathBuf, Weak<broadcast::Sender<Wakeup>>>>> =
    Mutex::new(None);

impl SqliteStore {
    /// Opens (creating it if needed) and migrates the file named by `url`:
    /// `sqlite://flow.db`, `sqlite:///abs/path.db` or `sqlite::memory:`.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        if !url.starts_with("sqlite:") {
            return Err(Error::Config(format!(
                "`{url}` is not an SQLite URL: write sqlite://path/to/file.db"
            )));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::Config(format!("`{url}` is not a valid SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL with synchronous=FULL: a committed checkpoint survives a power cut.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let path = options.get_filename().to_path_buf();
        // One connection: SQLite has one writer; a second would only wait for the lock.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| Error::database(format!("could not open {url}: {e}")))?;
        migrate(&pool).await?;
        let key = std::fs::canonicalize(&path).unwrap_or(path);
        let wakeups = {
            let mut notifiers = NOTIFIERS.lock().unwrap_or_else(|p| p.into_inner());
            let map = notifiers.get_or_insert_with(HashMap::new);
            // Files no store has open any more.
            map.retain(|_, sender| sender.strong_count() > 0);
            match map.get(&key).and_then(Weak::upgrade) {
                Some(existing) => existing,
                None => {
                    let sender = Arc::new(broadcast::channel(1024).0);
                    map.insert(key.clone(), Arc::downgrade(&sender));
                    sender
                }
            }
        };
        Ok(SqliteStore {
            pool,
            wakeups,
            finishes: Finishes::default(),
            described: format!("sqlite://{}", key.display()).into(),
        })
    }

    /// The pool, for the application's own queries.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) fn wake(&self, wakeup: Wakeup) {
        let _ = self.wakeups.send(wakeup);
    }
}

async fn migrate(pool: &SqlitePool) -> Result<(), Error> {
    let mut conn = pool.acquire().await.map_err(db_error)?;
    // BEGIN IMMEDIATE takes the write lock: two processes starting together migrate once.
    conn.execute("BEGIN IMMEDIATE").await.map_err(db_error)?;
    let result = async {
        conn.execute(
            "CREATE TABLE IF NOT EXISTS flow_schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .await
        .map_err(db_error)?;
        let current: i64 = sqlx::query_scalar("SELECT COALESCE(max(version), 0) FROM flow_schema_migrations")
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)?;
        let latest = MIGRATIONS.last().map_or(0, |m| m.0);
        if current > latest {
            return Err(Error::Config(format!(
                "the file's flow schema is version {current}, newer than this build of flow knows ({latest}); upgrade flow"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            conn.execute(sqlx::raw_sql(*sql))
                .await
                .map_err(|e| Error::database(format!("migration {version} failed: {e}")))?;
            sqlx::query("INSERT INTO flow_schema_migrations (version, applied_at) VALUES (?, ?)")
                .bind(version)
                .bind(micros(Utc::now()))
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }
    .await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    conn.execute(end).await.map_err(db_error)?;
    result
}

/// A database error as flow reports it; transient when the file is busy or locked
/// (SQLITE_BUSY, SQLITE_LOCKED and their extended codes) or the pool is gone.
pub(crate) fn db_error(error: sqlx::Error) -> Error {
    let transient = match &error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    };
    if transient {
        Error::unavailable(error)
    } else {
        Error::database(error)
    }
}

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn time(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MAX_UTC)
}
