//! Embedded migrations, applied on connect in one transaction under an advisory
//! lock, so workers starting together do not race. flow keeps its own version
//! table in its own schema: an application's sqlx migrations never see ours.

use sqlx::{Executor, PgPool, Row};

use flow_core::Error;

use crate::db_error;

/// (version, SQL), in order. Append only; never edit a released migration.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (
        2,
        include_str!("../migrations/0002_structured_failures.sql"),
    ),
    (3, include_str!("../migrations/0003_blocked_runs.sql")),
    (
        4,
        include_str!("../migrations/0004_time_ordered_run_ids.sql"),
    ),
    (5, include_str!("../migrations/0005_run_watchers.sql")),
    (6, include_str!("../migrations/0006_waits.sql")),
    (7, include_str!("../migrations/0007_system_events.sql")),
    (8, include_str!("../migrations/0008_invoke.sql")),
    (
        9,
        include_str!("../migrations/0009_cancel_on_and_timeouts.sql"),
    ),
    (10, include_str!("../migrations/0010_signals.sql")),
    (11, include_str!("../migrations/0011_pause.sql")),
    (12, include_str!("../migrations/0012_concurrency.sql")),
    (13, include_str!("../migrations/0013_idempotency.sql")),
    (14, include_str!("../migrations/0014_catalog_versions.sql")),
    (15, include_str!("../migrations/0015_singleton.sql")),
    (16, include_str!("../migrations/0016_throttle.sql")),
    (17, include_str!("../migrations/0017_run_concurrency.sql")),
    (18, include_str!("../migrations/0018_rate_limit.sql")),
    (19, include_str!("../migrations/0019_fair_claims.sql")),
    (20, include_str!("../migrations/0020_event_groups.sql")),
    (21, include_str!("../migrations/0021_function_triggers.sql")),
];

/// Any fixed number: the lock is per database.
const LOCK_KEY: i64 = 0x0066_6c6f_776d_6967; // "flowmig" in ASCII

/// Brings the schema up to date. Returns the versions applied now.
pub async fn migrate(pool: &PgPool) -> Result<Vec<i32>, Error> {
    let mut tx = pool.begin().await.map_err(db_error)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    tx.execute(
        "CREATE SCHEMA IF NOT EXISTS flow; \
         CREATE TABLE IF NOT EXISTS flow.schema_migrations \
           (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(db_error)?;
    let current: i32 = sqlx::query("SELECT COALESCE(max(version), 0) FROM flow.schema_migrations")
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?
        .get(0);
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > latest {
        return Err(Error::Config(format!(
            "the database's flow schema is version {current}, newer than this build of flow knows \
             ({latest}); upgrade flow in this program"
        )));
    }
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.execute(sqlx::raw_sql(*sql))
            .await
            .map_err(|e| Error::database(format!("migration {version} failed: {e}")))?;
        sqlx::query("INSERT INTO flow.schema_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        applied.push(*version);
    }
    tx.commit().await.map_err(db_error)?;
    Ok(applied)
}
