//! Starting invoked runs, as in flow-postgres: each run a kept park starts is
//! stored with its event and its parent's wait (migration 6), in the park's
//! transaction, unless its invoke has one already.

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use flow_core::Error;
use flow_core::store::{INVOKE_WAIT, RunWait};
use flow_core::system::FUNCTION_INVOKED;

use crate::{db_error, micros};

/// Stores the runs `waits` start for the run `parent`; returns whether it stored any.
pub(crate) async fn start(
    conn: &mut SqliteConnection,
    parent: &str,
    waits: &[RunWait],
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let mut started = false;
    for wait in waits {
        let Some(run) = &wait.start else { continue };
        let open: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM flow_waits WHERE run_id = ?1 AND key = ?2)
                 OR EXISTS (SELECT 1 FROM flow_steps WHERE run_id = ?1 AND key = ?2)",
        )
        .bind(parent)
        .bind(&wait.key)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
        if open {
            continue;
        }
        let run_id = run.run_id.0.to_string();
        let event_id = run.event_id.0.to_string();
        sqlx::query(
            "INSERT INTO flow_events (id, name, data, producer_id, ts, received_at)
             VALUES (?1, ?2, ?3, NULL, ?4, ?4)",
        )
        .bind(&event_id)
        .bind(FUNCTION_INVOKED)
        .bind(run.data.to_string())
        .bind(micros(now))
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO flow_runs
                 (id, function_id, event_id, status, not_before, created_at, parent_id)
             VALUES (?1, ?2, ?3, 'queued', ?4, ?4, ?5)",
        )
        .bind(&run_id)
        .bind(run.function_id)
        .bind(&event_id)
        .bind(micros(now))
        .bind(parent)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO flow_waits
                 (run_id, key, token, position, name, field, value, since, expires_at)
             VALUES (?1, ?2, 0, ?3, ?4, 'run_id', ?5, ?6, ?7)",
        )
        .bind(parent)
        .bind(&wait.key)
        .bind(wait.position as i64)
        .bind(INVOKE_WAIT)
        .bind(&run_id)
        .bind(micros(now))
        .bind(micros(wait.expires_at))
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        started = true;
    }
    Ok(started)
}
