//! Waits for events on SQLite: registered by a park, resolved by a send, both
//! inside the store's one write transaction at a time (migration 4).

use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection};

use flow_core::store::{EventWait, cancel_on_reason};
use flow_core::{Error, RunId};

use crate::{db_error, micros};

/// How a park's waits went: whether an event resolves one already (the run is
/// then due at once).
pub(crate) struct Registered {
    pub hit: bool,
}

/// Registers the waits of a park of `run` under `token`, or resolves those an
/// event stored since they began resolves already, recording the event as the
/// wait step's output. `wait_since` is when events began to count for a new
/// wait (read before the park's own update).
pub(crate) async fn register(
    conn: &mut SqliteConnection,
    run: &str,
    token: i64,
    waits: &[EventWait],
    wait_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Registered, Error> {
    let mut hit = false;
    for wait in waits {
        sqlx::query(
            "INSERT INTO flow_awaited_fields (name, field) VALUES (?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&wait.name)
        .bind(&wait.field)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        let value = canonical(conn, wait).await?;
        let known: Option<i64> =
            sqlx::query_scalar("SELECT since FROM flow_waits WHERE run_id = ? AND key = ?")
                .bind(run)
                .bind(&wait.key)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_error)?;
        let lookback =
            chrono::Duration::from_std(wait.lookback + flow_core::store::EVENT_TIME_MARGIN)
                .unwrap_or(chrono::Duration::MAX);
        let since = known.unwrap_or_else(|| {
            micros(
                wait_since
                    .checked_sub_signed(lookback)
                    .unwrap_or(DateTime::<Utc>::MIN_UTC),
            )
        });
        // The latest event with this value, if it came after the wait began and
        // the run has not received it before; for a key no send has written (its
        // events came before anyone waited on the field), the latest matching
        // stored event.
        let event = sqlx::query(
            "WITH latest AS (
                 SELECT e.id, e.name, e.data, e.ts FROM flow_wait_keys k
                 JOIN flow_events e ON e.id = k.event_id
                 WHERE k.name = ?1 AND k.field = ?2 AND k.value = ?3 AND k.event_at > ?4
             ), scanned AS (
                 SELECT e.id, e.name, e.data, e.ts FROM flow_events e
                 WHERE NOT EXISTS (SELECT 1 FROM flow_wait_keys k
                                   WHERE k.name = ?1 AND k.field = ?2 AND k.value = ?3
                                     AND k.event_id IS NOT NULL)
                   AND e.name = ?1 AND e.received_at > ?4
                   AND (?2 = '' OR e.data -> ('$.\"' || ?2 || '\"') = ?3)
                 ORDER BY e.received_at DESC
                 LIMIT 1
             )
             SELECT * FROM (SELECT * FROM latest UNION ALL SELECT * FROM scanned) c
             WHERE NOT EXISTS (SELECT 1 FROM flow_steps p
                               WHERE p.run_id = ?5 AND p.kind = 'wait'
                                 AND p.output ->> '$.id' = c.id)
             LIMIT 1",
        )
        .bind(&wait.name)
        .bind(&wait.field)
        .bind(&value)
        .bind(since)
        .bind(run)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
        match event {
            Some(event) => {
                record(conn, run, &wait.key, wait.position, &event, now).await?;
                close(conn, run, &wait.key).await?;
                hit = true;
            }
            None => {
                sqlx::query(
                    "INSERT INTO flow_waits
                         (run_id, key, token, position, name, field, value, since, expires_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (run_id, key) DO UPDATE SET token = excluded.token",
                )
                .bind(run)
                .bind(&wait.key)
                .bind(token)
                .bind(wait.position as i64)
                .bind(&wait.name)
                .bind(&wait.field)
                .bind(&value)
                .bind(since)
                .bind(micros(wait.expires_at))
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
            }
        }
    }
    Ok(Registered { hit })
}

/// The wait's value as the text sends compare: SQLite's own JSON text of it.
async fn canonical(conn: &mut SqliteConnection, wait: &EventWait) -> Result<String, Error> {
    match &wait.value {
        None => Ok(String::new()),
        Some(value) => sqlx::query_scalar("SELECT json(?)")
            .bind(value.to_string())
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error),
    }
}

/// Records an event (a row of id, name, data, ts) as wait `key`'s output.
async fn record(
    conn: &mut SqliteConnection,
    run: &str,
    key: &str,
    position: u32,
    event: &sqlx::sqlite::SqliteRow,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let id: String = event.try_get("id").map_err(db_error)?;
    let name: String = event.try_get("name").map_err(db_error)?;
    let data: String = event.try_get("data").map_err(db_error)?;
    let ts: i64 = event.try_get("ts").map_err(db_error)?;
    let inserted = sqlx::query(
        "INSERT INTO flow_steps
             (run_id, key, position, kind, output, error, attempts, started_at, finished_at)
         VALUES (?, ?, ?, 'wait',
                 json_object('id', ?, 'name', ?, 'data', json(?), 'ts', ?), NULL, 1, ?, ?)
         ON CONFLICT (run_id, key) DO NOTHING",
    )
    .bind(run)
    .bind(key)
    .bind(position as i64)
    .bind(&id)
    .bind(&name)
    .bind(&data)
    .bind(crate::time(ts).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    .bind(micros(now))
    .bind(micros(now))
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(inserted.rows_affected() == 1)
}

/// Cancels the runs whose cancel waits (`cancel_on`, migration 7) event
/// `event_id` (just stored) matches, adding them to `cancelled`, and resolves the
/// open waits it matches of the others, each with the first event that matches
/// it; returns whether it woke any run.
pub(crate) async fn resolve(
    conn: &mut SqliteConnection,
    event_id: &str,
    name: &str,
    now: DateTime<Utc>,
    cancelled: &mut Vec<RunId>,
) -> Result<bool, Error> {
    let keys = sqlx::query(
        "SELECT f.field,
                CASE WHEN f.field = '' THEN ''
                     ELSE e.data -> ('$.\"' || f.field || '\"') END AS value
         FROM flow_awaited_fields f JOIN flow_events e ON e.id = ?
         WHERE f.name = ?",
    )
    .bind(event_id)
    .bind(name)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let mut woke = false;
    for key in keys {
        let field: String = key.try_get("field").map_err(db_error)?;
        let Some(value) = key
            .try_get::<Option<String>, _>("value")
            .map_err(db_error)?
        else {
            continue;
        };
        if value.len() > flow_core::MATCH_VALUE_BYTES {
            continue;
        }
        sqlx::query(
            "INSERT INTO flow_wait_keys (name, field, value, event_id, event_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (name, field, value) DO UPDATE
                 SET event_id = excluded.event_id, event_at = excluded.event_at",
        )
        .bind(name)
        .bind(&field)
        .bind(&value)
        .bind(event_id)
        .bind(micros(now))
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        let ended = sqlx::query(
            "UPDATE flow_runs
             SET status = 'cancelled', error = ?4, error_kind = NULL, error_step = NULL,
                 finished_at = ?5, lease_owner = NULL, lease_expires_at = NULL
             WHERE id IN (SELECT run_id FROM flow_cancel_waits
                          WHERE name = ?1 AND field = ?2 AND value = ?3)
               AND status NOT IN ('completed', 'failed', 'cancelled')
             RETURNING id",
        )
        .bind(name)
        .bind(&field)
        .bind(&value)
        .bind(cancel_on_reason(name, event_id, &field))
        .bind(micros(now))
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        for row in ended {
            let id: String = row.try_get("id").map_err(db_error)?;
            cancelled.push(RunId(crate::store::uuid(&id)?));
        }
        let waits = sqlx::query(
            "SELECT w.run_id, w.key, w.position FROM flow_waits w
             JOIN flow_runs r ON r.id = w.run_id AND r.lease_token = w.token
                              AND r.status = 'waiting'
             WHERE w.name = ? AND w.field = ? AND w.value = ?",
        )
        .bind(name)
        .bind(&field)
        .bind(&value)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        if waits.is_empty() {
            continue;
        }
        let event = sqlx::query("SELECT id, name, data, ts FROM flow_events WHERE id = ?")
            .bind(event_id)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)?;
        for wait in waits {
            let run: String = wait.try_get("run_id").map_err(db_error)?;
            let key: String = wait.try_get("key").map_err(db_error)?;
            let position: i64 = wait.try_get("position").map_err(db_error)?;
            if record(conn, &run, &key, position as u32, &event, now).await? {
                sqlx::query(
                    "UPDATE flow_runs SET status = 'queued', not_before = ?2, wait_since = ?2,
                         step_count = step_count + 1
                     WHERE id = ?1",
                )
                .bind(&run)
                .bind(micros(now))
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
                woke = true;
            }
            close(conn, &run, &key).await?;
        }
    }
    Ok(woke)
}

/// Closes wait `key` of `run` (resolved, or timed out). A run that ends closes
/// all of its waits through a trigger (migration 4).
pub(crate) async fn close(conn: &mut SqliteConnection, run: &str, key: &str) -> Result<(), Error> {
    sqlx::query("DELETE FROM flow_waits WHERE run_id = ? AND key = ?")
        .bind(run)
        .bind(key)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(())
}
