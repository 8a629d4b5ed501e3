//! Signals, as in flow-postgres (migration 8 explains the table): a park's signal
//! waits are registered, and a signal is sent, inside one write transaction, so
//! the two never interleave.

use chrono::{DateTime, Utc};
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use flow_core::store::{
    NewSignal, SIGNAL_WAIT, SignalHolder, SignalReceipt, SignalWait, signal_held_error,
};
use flow_core::{Error, RunId};

use crate::{db_error, micros};

/// Registers the signal waits of a park the commit kept: for each, an error when
/// another wait holds the name, else the oldest buffered signal, else the wait's
/// row (see [`SignalWait`]). Returns whether it made the run due.
pub(crate) async fn register(
    conn: &mut SqliteConnection,
    run: &str,
    token: i64,
    waits: &[SignalWait],
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let mut woke = false;
    for wait in waits {
        let holder = sqlx::query(
            "SELECT run_id, key FROM flow_waits
             WHERE name = ?1 AND field = 'signal' AND value = ?2 AND expires_at > ?3
               AND NOT (run_id = ?4 AND key = ?5)
             ORDER BY since
             LIMIT 1",
        )
        .bind(SIGNAL_WAIT)
        .bind(&wait.name)
        .bind(micros(now))
        .bind(run)
        .bind(&wait.key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
        let (output, error) = if let Some(holder) = holder {
            let holder_run: String = holder.try_get("run_id").map_err(db_error)?;
            let holder = if holder_run == run {
                SignalHolder::Wait(holder.try_get("key").map_err(db_error)?)
            } else {
                SignalHolder::Run(RunId(crate::store::uuid(&holder_run)?))
            };
            (None, Some(signal_held_error(wait, &holder).to_string()))
        } else if let Some(kept) = sqlx::query(
            "DELETE FROM flow_signal_buffer
             WHERE id = (SELECT id FROM flow_signal_buffer WHERE name = ? ORDER BY id LIMIT 1)
             RETURNING id, data, sent_at",
        )
        .bind(&wait.name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?
        {
            let id: String = kept.try_get("id").map_err(db_error)?;
            let data: String = kept.try_get("data").map_err(db_error)?;
            let sent_at: i64 = kept.try_get("sent_at").map_err(db_error)?;
            (
                Some(output(&wait.name, &id, &data, crate::time(sent_at))?),
                None,
            )
        } else {
            sqlx::query(
                "INSERT INTO flow_waits
                     (run_id, key, token, position, name, field, value, since, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'signal', ?6, ?7, ?8)
                 ON CONFLICT (run_id, key) DO UPDATE SET token = excluded.token",
            )
            .bind(run)
            .bind(&wait.key)
            .bind(token)
            .bind(wait.position as i64)
            .bind(SIGNAL_WAIT)
            .bind(&wait.name)
            .bind(micros(now))
            .bind(micros(wait.expires_at))
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
            continue;
        };
        let record = Record {
            run,
            key: &wait.key,
            position: wait.position as i64,
            output,
            error,
        };
        if record.insert(conn, now).await? {
            sqlx::query(
                "UPDATE flow_runs
                 SET status = 'queued', not_before = ?3, wait_since = ?3,
                     step_count = step_count + 1
                 WHERE id = ?1 AND lease_token = ?2 AND status IN ('waiting', 'queued')",
            )
            .bind(run)
            .bind(token)
            .bind(micros(now))
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
            crate::waits::close(conn, run, &wait.key).await?;
            woke = true;
        }
    }
    Ok(woke)
}

/// Sends a signal: resolves the open wait on its name (the run woken, or marked
/// if it is executing, as an invoked run's end does), or buffers it when asked.
pub(crate) async fn send(
    conn: &mut SqliteConnection,
    signal: &NewSignal,
    now: DateTime<Utc>,
) -> Result<Option<SignalReceipt>, Error> {
    let id = Uuid::now_v7().to_string();
    let data = signal.data.to_string();
    let waiter = sqlx::query(
        "DELETE FROM flow_waits
         WHERE rowid = (SELECT rowid FROM flow_waits
                        WHERE name = ?1 AND field = 'signal' AND value = ?2 AND expires_at > ?3
                        ORDER BY since
                        LIMIT 1)
         RETURNING run_id, key, position",
    )
    .bind(SIGNAL_WAIT)
    .bind(&signal.name)
    .bind(micros(now))
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?;
    if let Some(waiter) = waiter {
        let run: String = waiter.try_get("run_id").map_err(db_error)?;
        let key: String = waiter.try_get("key").map_err(db_error)?;
        let position: i64 = waiter.try_get("position").map_err(db_error)?;
        let record = Record {
            run: &run,
            key: &key,
            position,
            output: Some(output(&signal.name, &id, &data, now)?),
            error: None,
        };
        if record.insert(conn, now).await? {
            sqlx::query(
                "UPDATE flow_runs
                 SET status = CASE WHEN status IN ('waiting', 'sleeping', 'queued')
                                   THEN 'queued' ELSE status END,
                     not_before = CASE WHEN status IN ('waiting', 'sleeping', 'queued')
                                       THEN min(not_before, ?2) ELSE not_before END,
                     wait_since = CASE WHEN status IN ('waiting', 'sleeping')
                                       THEN ?2 ELSE wait_since END,
                     woken_under = CASE WHEN status = 'running'
                                        THEN lease_token ELSE woken_under END,
                     step_count = step_count + 1
                 WHERE id = ?1",
            )
            .bind(&run)
            .bind(micros(now))
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
            return Ok(Some(SignalReceipt::Delivered(RunId(crate::store::uuid(
                &run,
            )?))));
        }
    }
    if !signal.buffer {
        return Ok(None);
    }
    sqlx::query("INSERT INTO flow_signal_buffer (id, name, data, sent_at) VALUES (?, ?, ?, ?)")
        .bind(&id)
        .bind(&signal.name)
        .bind(&data)
        .bind(micros(now))
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(Some(SignalReceipt::Buffered))
}

/// A signal wait's step record: its output (the signal) or its error.
struct Record<'a> {
    run: &'a str,
    key: &'a str,
    position: i64,
    output: Option<String>,
    error: Option<String>,
}

impl Record<'_> {
    /// Inserts it, unless the step has a record; returns whether it did.
    async fn insert(&self, conn: &mut SqliteConnection, now: DateTime<Utc>) -> Result<bool, Error> {
        let inserted = sqlx::query(
            "INSERT INTO flow_steps
                 (run_id, key, position, kind, output, error, attempts, started_at, finished_at)
             VALUES (?1, ?2, ?3, 'signal', ?4, ?5, 1, ?6, ?6)
             ON CONFLICT (run_id, key) DO NOTHING",
        )
        .bind(self.run)
        .bind(self.key)
        .bind(self.position)
        .bind(self.output.as_deref())
        .bind(self.error.as_deref())
        .bind(micros(now))
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        Ok(inserted.rows_affected() == 1)
    }
}

/// A signal as its wait's step records it: `{signal, id, data, ts}`, as
/// flow-postgres writes it.
fn output(name: &str, id: &str, data: &str, sent_at: DateTime<Utc>) -> Result<String, Error> {
    let data: serde_json::Value = serde_json::from_str(data)
        .map_err(|e| Error::Database(format!("a kept signal's payload does not parse: {e}")))?;
    Ok(serde_json::json!({
        "signal": name,
        "id": id,
        "data": data,
        "ts": sent_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    })
    .to_string())
}
