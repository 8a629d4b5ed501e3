//! Grouped functions (`batch_events`, `debounce`; flow_core::grouping): a sent
//! event joins its key's open group or opens one, inside the send's write
//! transaction (so no claim comes between the read of a group and the join).

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use flow_core::grouping::GroupKey;
use flow_core::{Error, EventId, RunId, StoredEvent};

use crate::store::{parse_json, uuid};
use crate::{db_error, micros, time};

/// Joins event `event` to the open group of `group`'s key for `function`, or
/// opens a group (a run, queued and due when the group closes) with it; returns
/// the group's run.
pub(crate) async fn join(
    conn: &mut SqliteConnection,
    function: &str,
    group: &GroupKey,
    event: EventId,
    now: DateTime<Utc>,
) -> Result<RunId, Error> {
    let rule = &group.rule;
    let ms = |ms: u64| TimeDelta::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX));
    let open = sqlx::query(
        "SELECT g.run_id, g.size, g.opened_at, r.not_before FROM flow_event_groups g
         JOIN flow_runs r ON r.id = g.run_id
         WHERE g.function_id = ? AND g.key = ? AND r.status = 'queued' AND r.not_before > ?",
    )
    .bind(function)
    .bind(&group.key)
    .bind(micros(now))
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?;
    let open = match open {
        Some(row) => {
            let size: i64 = row.try_get("size").map_err(db_error)?;
            (size < i64::from(rule.max_size)).then_some(row)
        }
        None => None,
    };
    let (run, size, opened_at) = match &open {
        Some(row) => (
            RunId(uuid(
                &row.try_get::<String, _>("run_id").map_err(db_error)?,
            )?),
            row.try_get::<i64, _>("size").map_err(db_error)? + 1,
            time(row.try_get("opened_at").map_err(db_error)?),
        ),
        None => (RunId(Uuid::now_v7()), 1, now),
    };
    // Due when full; a batch `timeout` after it opened; a debounce `period`
    // after its last event, but no later than `timeout` after its first.
    let due = if size >= i64::from(rule.max_size) {
        now
    } else {
        match rule.period_ms {
            None => opened_at + ms(rule.timeout_ms.unwrap_or(0)),
            Some(period) => {
                let quiet = now + ms(period);
                rule.timeout_ms
                    .map_or(quiet, |timeout| quiet.min(opened_at + ms(timeout)))
            }
        }
    };
    match &open {
        Some(row) => {
            let before = time(row.try_get("not_before").map_err(db_error)?);
            if due != before {
                // A start deadline (timeouts) counts from when the run is due.
                sqlx::query(
                    "UPDATE flow_runs SET not_before = ?1, timeout_at = timeout_at + (?1 - ?2)
                     WHERE id = ?3",
                )
                .bind(micros(due))
                .bind(micros(before))
                .bind(run.0.to_string())
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
            }
        }
        None => {
            sqlx::query(
                "INSERT INTO flow_runs (id, function_id, event_id, status, not_before, created_at)
                 VALUES (?, ?, ?, 'queued', ?, ?)",
            )
            .bind(run.0.to_string())
            .bind(function)
            .bind(event.0.to_string())
            .bind(micros(due))
            .bind(micros(now))
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        }
    }
    sqlx::query("INSERT INTO flow_run_events (run_id, position, event_id) VALUES (?, ?, ?)")
        .bind(run.0.to_string())
        .bind(size)
        .bind(event.0.to_string())
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    sqlx::query(
        "INSERT INTO flow_event_groups (function_id, key, run_id, size, opened_at)
         VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (function_id, key) DO UPDATE
             SET run_id = excluded.run_id, size = excluded.size, opened_at = excluded.opened_at",
    )
    .bind(function)
    .bind(&group.key)
    .bind(run.0.to_string())
    .bind(size)
    .bind(micros(opened_at))
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(run)
}

/// The events of a grouped run, in the order they joined it.
pub(crate) async fn events_of(
    conn: &mut SqliteConnection,
    run: RunId,
) -> Result<Vec<StoredEvent>, Error> {
    let rows = sqlx::query(
        "SELECT e.id, e.name, e.data, e.ts FROM flow_run_events re
         JOIN flow_events e ON e.id = re.event_id
         WHERE re.run_id = ? ORDER BY re.position",
    )
    .bind(run.0.to_string())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|row| {
            Ok(StoredEvent {
                id: EventId(uuid(&row.try_get::<String, _>("id").map_err(db_error)?)?),
                name: row.try_get("name").map_err(db_error)?,
                data: parse_json(&row.try_get::<String, _>("data").map_err(db_error)?)?,
                ts: time(row.try_get("ts").map_err(db_error)?),
            })
        })
        .collect()
}
