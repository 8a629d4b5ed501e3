//! The claim of runs of limited functions (`concurrency(...)`, migration 10,
//! `throttle(...)`, migration 14, and `run_concurrency(...)`, migration 15),
//! inside the claim's write transaction: SQLite has one writer at a time, so the
//! runs it counts cannot change before the claim commits.
//!
//! Candidates whose keys are already full are left out by the query, so that a key
//! with a long backlog does not fill every claim with runs that cannot start.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use flow_core::flow_control::{Candidate, Limited};
use flow_core::store::{ClaimRequest, ClaimedRun};
use flow_core::{Error, EventId, StoredEvent};

use crate::store::{claimed_run, unpaused_sql, uuid};
use crate::{db_error, micros, time};
use flow_core::later;

/// How many candidates one claim looks at per free slot.
const CANDIDATES_PER_SLOT: usize = 2;

/// Runs executing per key, live leases only (a dead worker's slot frees itself
/// when its lease expires), and, when `limited` has `run_concurrency` rules,
/// runs active (started, not ended) per active key.
pub(crate) async fn held(
    conn: &mut SqliteConnection,
    limited: &Limited,
    now: DateTime<Utc>,
) -> Result<HashMap<String, u64>, Error> {
    let mut held = counts(
        sqlx::query(
            "SELECT k.value AS key, count(*) AS n
             FROM flow_runs x, json_each(x.concurrency_keys) AS k
             WHERE x.status = 'running' AND x.lease_expires_at > ?
               AND x.concurrency_keys IS NOT NULL
             GROUP BY k.value",
        )
        .bind(micros(now))
        .fetch_all(&mut *conn)
        .await,
    )?;
    if limited.counts_active() {
        // Through `flow_runs_active`: only runs that hold active keys.
        held.extend(counts(
            sqlx::query(
                "SELECT k.value AS key, count(*) AS n
                 FROM flow_runs x, json_each(x.active_keys) AS k
                 WHERE x.active_keys IS NOT NULL
                   AND x.status IN ('queued', 'running', 'sleeping', 'waiting', 'blocked')
                 GROUP BY k.value",
            )
            .fetch_all(&mut *conn)
            .await,
        )?);
    }
    Ok(held)
}

/// `(key, n)` rows as a map.
fn counts(rows: Result<Vec<SqliteRow>, sqlx::Error>) -> Result<HashMap<String, u64>, Error> {
    rows.map_err(db_error)?
        .iter()
        .map(|row| Ok((row.try_get("key")?, row.try_get::<i64, _>("n")? as u64)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(db_error)
}

/// The condition that leaves out a run `r` with a full key, given `?full` (a JSON
/// array of `function \x1e key` from `Limited::full_pairs`): an active key
/// (`flow_control::ACTIVE`) holds back only a run that has not started.
macro_rules! not_full_sql {
    ($full:literal) => {
        concat!(
            "(r.concurrency_keys IS NULL OR NOT EXISTS (
                 SELECT 1 FROM json_each(r.concurrency_keys) AS k
                 WHERE r.function_id || char(30) || k.value IN (SELECT value FROM json_each(",
            $full,
            "))
                   AND (r.started_at IS NULL OR k.value NOT LIKE 'active' || char(31) || '%')))"
        )
    };
}
pub(crate) use not_full_sql;

/// Claims up to `max` runs of `request.limited`'s functions.
pub(crate) async fn claim(
    conn: &mut SqliteConnection,
    request: &ClaimRequest<'_>,
    max: usize,
    now: DateTime<Utc>,
) -> Result<Vec<ClaimedRun>, Error> {
    let limited = request.limited;
    let held = held(conn, limited, now).await?;
    let full = serde_json::to_string(&limited.full_pairs(&held)).expect("strings serialize");
    let functions = serde_json::to_string(limited.ids()).expect("strings serialize");
    let rows = sqlx::query(concat!(
        // First the oldest due run of one limited function, picked at random (as
        // the unlimited claim does), then the others in due order. Materialized:
        // inlined at each use, its random pick would differ between them, and a
        // run could be a candidate twice (a throttle would count two starts).
        "WITH head AS MATERIALIZED (
             SELECT r.id FROM flow_runs r
             WHERE r.function_id = (SELECT value FROM ",
        unpaused_sql!("?2"),
        " ORDER BY random() LIMIT 1)
               AND r.status IN ('queued', 'sleeping', 'waiting', 'blocked')
               AND r.not_before <= ?1
               AND (r.timeout_at IS NULL OR r.timeout_at > ?1)
               AND ",
        not_full_sql!("?3"),
        "
             ORDER BY r.not_before, r.id
             LIMIT 1
         ), picked AS (
             SELECT id, 0 AS pass FROM head
             UNION ALL
             SELECT * FROM (
                 SELECT r.id, 1 FROM flow_runs r
                 WHERE r.status IN ('queued', 'sleeping', 'waiting', 'blocked')
                   AND r.not_before <= ?1
                   AND r.function_id IN ",
        unpaused_sql!("?2"),
        "
                   AND (r.timeout_at IS NULL OR r.timeout_at > ?1)
                   AND ",
        not_full_sql!("?3"),
        "
                   AND r.id NOT IN (SELECT id FROM head)
                 ORDER BY r.not_before, r.id
                 LIMIT ?4)
         )
         SELECT r.id, r.function_id, r.concurrency_keys AS keys,
                r.started_at IS NOT NULL AS started,
                e.id AS event_id, e.name, e.data, e.ts
         FROM picked p JOIN flow_runs r ON r.id = p.id JOIN flow_events e ON e.id = r.event_id
         ORDER BY p.pass, r.not_before, r.id
         LIMIT ?4"
    ))
    .bind(micros(now))
    .bind(&functions)
    .bind(&full)
    .bind(i64::try_from(max.saturating_mul(CANDIDATES_PER_SLOT)).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;

    // In due order: the run, its keys, whether they were evaluated now.
    let mut keyed: Vec<(String, Candidate, bool)> = Vec::new();
    // Runs whose keys do not evaluate: taken first, without a slot; the worker
    // fails them at once.
    let mut unkeyable: Vec<(String, String)> = Vec::new();
    for row in &rows {
        let read =
            |e: sqlx::Error| Error::Database(format!("a claim candidate does not read: {e}"));
        let id: String = row.try_get("id").map_err(read)?;
        let function_id: String = row.try_get("function_id").map_err(read)?;
        // Evaluated every time, so that a run keyed under another configuration
        // (a rule added, a key changed) counts under the keys it has now.
        let stored: Option<String> = row.try_get("keys").map_err(read)?;
        match limited.keys(&function_id, &event(row)?) {
            Ok(keys) => {
                let fresh = stored
                    .and_then(|s| serde_json::from_str::<Vec<String>>(&s).ok())
                    .is_none_or(|stored| stored != keys);
                let started: bool = row.try_get("started").map_err(read)?;
                let candidate = Candidate {
                    function_id,
                    keys,
                    started,
                };
                keyed.push((id, candidate, fresh));
            }
            Err(problem) => unkeyable.push((id, problem)),
        }
    }
    unkeyable.truncate(max);
    let mut throttles = throttle_state(conn, &keyed).await?;
    let before = throttles.clone();
    let for_admission: Vec<Candidate> = keyed.iter().map(|(_, c, _)| c.clone()).collect();
    let admission = limited.admit(
        &for_admission,
        &held,
        &mut throttles,
        now,
        max - unkeyable.len(),
    );
    for (key, tat) in &throttles {
        if before.get(key) != Some(tat) {
            sqlx::query(
                "INSERT INTO flow_throttles (key, tat) VALUES (?, ?)
                 ON CONFLICT (key) DO UPDATE SET tat = excluded.tat",
            )
            .bind(key)
            .bind(micros(*tat))
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        }
    }
    // Runs a throttle holds wait for their key's next start.
    for (i, until) in &admission.throttled {
        sqlx::query("UPDATE flow_runs SET not_before = ? WHERE id = ?")
            .bind(micros(*until))
            .bind(&keyed[*i].0)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }

    let mut claimed = Vec::new();
    for (id, problem) in unkeyable {
        if let Some(row) = lease(conn, request, &id, None, None, now).await? {
            let mut run = claimed_run(conn, &row, request.owner).await?;
            run.key_problem = Some(problem);
            claimed.push(run);
        }
    }
    for (i, (id, candidate, fresh)) in keyed.iter().enumerate() {
        let keys = fresh.then(|| serde_json::to_string(&candidate.keys).expect("strings"));
        if admission.admitted.contains(&i) {
            // A first start takes the active keys it holds until it ends.
            let active: Vec<&String> = candidate
                .keys
                .iter()
                .filter(|k| Limited::is_active_key(k))
                .collect();
            let active = (!candidate.started && !active.is_empty())
                .then(|| serde_json::to_string(&active).expect("strings"));
            if let Some(row) = lease(conn, request, id, keys, active, now).await? {
                claimed.push(claimed_run(conn, &row, request.owner).await?);
            }
        } else if let Some(keys) = keys {
            sqlx::query("UPDATE flow_runs SET concurrency_keys = ? WHERE id = ?")
                .bind(keys)
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
        }
    }
    Ok(claimed)
}

/// The state (theoretical arrival time) of the throttle keys of candidates that
/// have not started.
async fn throttle_state(
    conn: &mut SqliteConnection,
    keyed: &[(String, Candidate, bool)],
) -> Result<HashMap<String, DateTime<Utc>>, Error> {
    let keys: Vec<&str> = keyed
        .iter()
        .filter(|(_, c, _)| !c.started)
        .flat_map(|(_, c, _)| c.keys.iter().map(String::as_str))
        .filter(|k| Limited::is_throttle_key(k))
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let keys = serde_json::to_string(&keys).expect("strings serialize");
    sqlx::query("SELECT key, tat FROM flow_throttles WHERE key IN (SELECT value FROM json_each(?))")
        .bind(keys)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| {
            Ok((
                row.try_get("key").map_err(db_error)?,
                time(row.try_get("tat").map_err(db_error)?),
            ))
        })
        .collect()
}

/// Leases one candidate, storing its keys when they were evaluated now, and the
/// active keys of a first start.
async fn lease(
    conn: &mut SqliteConnection,
    request: &ClaimRequest<'_>,
    id: &str,
    keys: Option<String>,
    active: Option<String>,
    now: DateTime<Utc>,
) -> Result<Option<SqliteRow>, Error> {
    sqlx::query(
        "UPDATE flow_runs
         SET status = 'running', lease_owner = ?1, lease_token = lease_token + 1,
             lease_expires_at = ?2, started_at = COALESCE(started_at, ?3),
             timeout_at = CASE WHEN started_at IS NULL THEN ?3 + finish_within
                               ELSE timeout_at END,
             concurrency_keys = COALESCE(?5, concurrency_keys),
             active_keys = COALESCE(?6, active_keys)
         WHERE id = ?4
         RETURNING id, function_id, lease_token, lost_count, blocked_count, step_count,
                   event_id",
    )
    .bind(&**request.owner)
    .bind(micros(later(now, request.lease)))
    .bind(micros(now))
    .bind(id)
    .bind(keys)
    .bind(active)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)
}

fn event(row: &SqliteRow) -> Result<StoredEvent, Error> {
    let read = |e: sqlx::Error| Error::Database(format!("a claim candidate's event: {e}"));
    let data: String = row.try_get("data").map_err(read)?;
    Ok(StoredEvent {
        id: EventId(uuid(&row.try_get::<String, _>("event_id").map_err(read)?)?),
        name: row.try_get("name").map_err(read)?,
        data: serde_json::from_str(&data)
            .map_err(|e| Error::Database(format!("a claim candidate's event data: {e}")))?,
        ts: time(row.try_get("ts").map_err(read)?),
    })
}
