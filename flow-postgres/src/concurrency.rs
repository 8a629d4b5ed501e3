//! The claim of runs of limited functions (`concurrency(...)`, migration 12,
//! `throttle(...)`, migration 16, and `run_concurrency(...)`, migration 17), in
//! one transaction:
//!
//! 1. the due runs of those functions whose keys are not known to be full, in due
//!    order, locked (`SKIP LOCKED`): the candidates;
//! 2. the keys of candidates not keyed yet, evaluated here from their events;
//! 3. the candidates' keys locked (advisory, sorted), so that claimers of a key
//!    take turns: each counts only after the one before it committed;
//! 4. the running runs of those keys counted, the active runs of the active keys
//!    of runs that have not started counted, and the state of their throttle
//!    keys read (a statement begun after the locks sees every claim that held
//!    them before);
//! 5. the admitted candidates leased, the new keys of the others stored, the
//!    throttle states moved on, and the runs a throttle holds made due at their
//!    key's next start.
//!
//! Step 1 leaves out runs whose keys were full when it began, so a key with a long
//! backlog does not fill every claim with runs that cannot start: the other keys
//! are served meanwhile.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection, Row};
use uuid::Uuid;

use flow_core::flow_control::{Candidate, Limited, key_hash};
use flow_core::store::ClaimRequest;
use flow_core::{Error, EventId, Now, StoredEvent};

use crate::db_error;
use crate::store::{claim_sql, claimed_rows_sql};

/// The advisory lock class of concurrency keys ("flow" in ASCII); the second key
/// is the key's hash folded to 32 bits.
const LOCK_CLASS: i32 = 0x666c_6f77;

/// How many candidates one claim looks at per free slot: runs of a busy key are
/// passed over, up to this many per slot.
const CANDIDATES_PER_SLOT: usize = 2;

/// The running runs of each key, live leases only (a dead worker's slot frees
/// itself when its lease expires): computed once per statement (materialized),
/// not once per row that [`full_sql`] is asked of.
macro_rules! running_sql {
    ($clock:literal) => {
        concat!(
            "running AS MATERIALIZED (
         SELECT k.key, count(*) AS n
         FROM flow.runs x, unnest(x.concurrency_keys) AS k(key)
         WHERE x.status = 'running' AND x.lease_expires_at > ",
            $clock,
            "
         GROUP BY k.key
     )"
        )
    };
}

/// The rule table `limits(function_id, position, lim, active)`
/// ([`Limited::rule_table`]) from four parameters.
macro_rules! limits_sql {
    ($functions:literal, $positions:literal, $limits:literal, $active:literal) => {
        concat!(
            "limits AS (
         SELECT * FROM unnest(",
            $functions,
            "::text[], ",
            $positions,
            "::integer[], ",
            $limits,
            "::integer[], ",
            $active,
            "::boolean[])
             AS l(function_id, position, lim, active)
     )"
        )
    };
}

/// Whether a run `r` (keyed) has a key that is full, by `limits`: an executing
/// key by `running`, an active key (for a run that has not started) by a count of
/// its active runs through their index (`runs_active_keys`).
macro_rules! full_sql {
    () => {
        "EXISTS (SELECT 1 FROM unnest(r.concurrency_keys) WITH ORDINALITY AS k(key, position)
                 JOIN limits l ON l.function_id = r.function_id AND l.position = k.position
                 LEFT JOIN running ON running.key = k.key
                 WHERE CASE WHEN l.active THEN
                           r.started_at IS NULL
                           AND (SELECT count(*) FROM flow.runs x
                                WHERE x.active_keys @> ARRAY[k.key]
                                  AND x.status IN ('queued', 'running', 'sleeping', 'waiting',
                                                   'blocked')) >= l.lim
                       ELSE running.n >= l.lim END)"
    };
}
pub(crate) use {full_sql, limits_sql, running_sql};

/// The candidates of step 1: first the oldest due run of one limited function,
/// picked at random (as the unlimited claim's `heads`, through
/// `runs_due_by_function`), so one limited function's backlog does not hold up
/// another's; then the others in due order.
const CANDIDATES: &str = concat!(
    "WITH clock AS (
         SELECT COALESCE($1::timestamptz, now()) AS now
     ), ",
    limits_sql!("$2", "$3", "$4", "$7"),
    ", ",
    running_sql!("(SELECT now FROM clock)"),
    ", serving AS (
         SELECT unnest(",
    crate::store::unpaused_sql!("$5"),
    ") AS id
     ), head AS (
         -- The statuses as `runs_due_by_function` names them (migration 19).
         SELECT r.id, r.not_before FROM flow.runs r
         WHERE r.function_id = (SELECT id FROM serving ORDER BY random() LIMIT 1)
           AND r.status NOT IN ('running', 'completed', 'failed', 'cancelled', 'skipped')
           AND r.not_before <= (SELECT now FROM clock)
           AND (r.timeout_at IS NULL OR r.timeout_at > (SELECT now FROM clock))
           AND (r.concurrency_keys IS NULL OR NOT ",
    full_sql!(),
    ")
           AND (SELECT count(*) FROM serving) > 1
         ORDER BY r.not_before, r.id
         LIMIT 1
         FOR UPDATE OF r SKIP LOCKED
     ), in_order AS (
         SELECT r.id, r.not_before FROM flow.runs r
         WHERE r.status IN ('queued', 'sleeping', 'waiting', 'blocked')
           AND r.not_before <= (SELECT now FROM clock)
           AND r.function_id = ANY(ARRAY(SELECT id FROM serving))
           AND (r.timeout_at IS NULL OR r.timeout_at > (SELECT now FROM clock))
           AND (r.concurrency_keys IS NULL OR NOT ",
    full_sql!(),
    ")
           AND NOT (r.id = ANY(ARRAY(SELECT id FROM head)))
         -- Ties in due order by id (time-ordered): a throttle's held runs, all due at
         -- its next start, go first in first out.
         ORDER BY r.not_before, r.id
         LIMIT $6 - (SELECT count(*) FROM head)
         FOR UPDATE OF r SKIP LOCKED
     ), picked AS (
         SELECT id, 0 AS pass, not_before FROM head
         UNION ALL
         SELECT id, 1, not_before FROM in_order
     )
     SELECT r.id, r.function_id, r.concurrency_keys AS keys, r.started_at IS NOT NULL AS started,
            (SELECT now FROM clock) AS claim_now,
            e.id AS event_id, e.name, e.data, e.ts
     FROM picked p JOIN flow.runs r ON r.id = p.id JOIN flow.events e ON e.id = r.event_id
     ORDER BY p.pass, p.not_before, r.id"
);

/// Step 5: `$2`/`$3` the new keys of candidates left waiting, `$6`/`$7`/`$12`
/// the admitted runs with their new keys (NULL: keep the stored ones, or keyless
/// for a run whose keys do not evaluate) and, for a first start, the active keys
/// it holds until it ends (NULL: none, or keep them).
const LEASE: &str = concat!(
    // The statement's own start, after the locks and the count, not the
    // transaction's (`now()`): a run admitted because another ended starts after
    // it ended.
    "WITH clock AS (
         SELECT COALESCE($1::timestamptz, statement_timestamp()) AS now
     ), keyed AS (
         UPDATE flow.runs r
         SET concurrency_keys = ARRAY(SELECT jsonb_array_elements_text(k.keys))
         FROM unnest($2::uuid[], $3::jsonb[]) AS k(id, keys)
         WHERE r.id = k.id
         RETURNING 1
     ), throttled AS (
         -- Runs a throttle holds wait for their key's next start (migration 16).
         UPDATE flow.runs r SET not_before = t.until
         FROM unnest($10::uuid[], $11::timestamptz[]) AS t(id, until)
         WHERE r.id = t.id
         RETURNING 1
     ), throttle_state AS (
         INSERT INTO flow.throttles AS t (key, tat)
         SELECT * FROM unnest($8::text[], $9::timestamptz[])
         ON CONFLICT (key) DO UPDATE SET tat = EXCLUDED.tat
         RETURNING 1
     ), ",
    claim_sql!(
        "$4",
        "$5",
        ", concurrency_keys = CASE WHEN a.keys IS NULL THEN r.concurrency_keys
                                   ELSE ARRAY(SELECT jsonb_array_elements_text(a.keys)) END,
           active_keys = CASE WHEN a.active IS NULL THEN r.active_keys
                              ELSE ARRAY(SELECT jsonb_array_elements_text(a.active)) END",
        ", unnest($6::uuid[], $7::jsonb[], $12::jsonb[]) AS a(id, keys, active)",
        "r.id = a.id"
    ),
    "\n     ",
    claimed_rows_sql!()
);

/// Claims up to `max` runs of `request.limited`'s functions; returns the claimed
/// rows (as the commit statement's `claimed` rows) and the runs whose keys do not
/// evaluate, with why.
pub(crate) async fn claim(
    conn: &mut PgConnection,
    request: &ClaimRequest<'_>,
    max: usize,
    now: Now,
) -> Result<(Vec<PgRow>, HashMap<Uuid, String>), Error> {
    let limited = request.limited;
    // Its commit need not wait for the disk: a claim lost in a crash leaves its
    // runs queued, as if its worker had died, and keys are evaluated again.
    let mut tx = conn
        .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
        .await
        .map_err(db_error)?;
    let table = limited.rule_table();
    let rows = sqlx::query(CANDIDATES)
        .bind(now.at())
        .bind(&table.functions)
        .bind(&table.positions)
        .bind(&table.limits)
        .bind(limited.ids())
        .bind(i64::try_from(max.saturating_mul(CANDIDATES_PER_SLOT)).unwrap_or(i64::MAX))
        .bind(&table.active)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
    if rows.is_empty() {
        return Ok((Vec::new(), HashMap::new()));
    }
    let candidates = candidates(&rows, limited)?;

    let keys = candidates.keyed.iter().flat_map(|(_, c, _)| c.keys.iter());
    lock_keys(&mut tx, LOCK_CLASS, keys).await?;

    let keys: Vec<&str> = candidates
        .keyed
        .iter()
        .flat_map(|(_, c, _)| c.keys.iter().map(String::as_str))
        .filter(|k| !Limited::is_throttle_key(k) && !Limited::is_active_key(k))
        .collect();
    let mut held: HashMap<String, u64> = sqlx::query(
        "SELECT k.key, count(*) AS n
         FROM flow.runs x, unnest(x.concurrency_keys) AS k(key)
         WHERE x.status = 'running'
           AND x.lease_expires_at > COALESCE($1::timestamptz, now())
           AND x.concurrency_keys && $2::text[]
           AND k.key = ANY($2)
         GROUP BY k.key",
    )
    .bind(now.at())
    .bind(&keys)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?
    .iter()
    .map(|row| Ok((row.try_get("key")?, row.try_get::<i64, _>("n")? as u64)))
    .collect::<Result<_, sqlx::Error>>()
    .map_err(db_error)?;
    held.extend(active(&mut tx, &candidates).await?);

    // Runs whose keys do not evaluate are taken first, without a slot: the worker
    // fails them at once.
    let mut admitted: Vec<(Uuid, Option<Value>)> = candidates
        .unkeyable
        .keys()
        .take(max)
        .map(|id| (*id, None))
        .collect();
    // The throttle keys of runs that have not started, with their state, read
    // after the locks like the running counts.
    let throttle_keys: Vec<&str> = candidates
        .keyed
        .iter()
        .filter(|(_, c, _)| !c.started)
        .flat_map(|(_, c, _)| c.keys.iter().map(String::as_str))
        .filter(|k| Limited::is_throttle_key(k))
        .collect();
    let mut throttles: HashMap<String, DateTime<Utc>> = HashMap::new();
    if !throttle_keys.is_empty() {
        for row in sqlx::query("SELECT key, tat FROM flow.throttles WHERE key = ANY($1)")
            .bind(&throttle_keys)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?
        {
            throttles.insert(
                row.try_get("key").map_err(db_error)?,
                row.try_get("tat").map_err(db_error)?,
            );
        }
    }
    let before = throttles.clone();
    let claim_now: DateTime<Utc> = rows[0].try_get("claim_now").map_err(db_error)?;
    let for_admission: Vec<Candidate> =
        candidates.keyed.iter().map(|(_, c, _)| c.clone()).collect();
    let admission = limited.admit(
        &for_admission,
        &held,
        &mut throttles,
        claim_now,
        max - admitted.len(),
    );
    let mut waiting = Vec::new();
    let mut first_active: HashMap<Uuid, Value> = HashMap::new();
    for (i, (id, candidate, fresh)) in candidates.keyed.iter().enumerate() {
        let keys = fresh.then(|| Value::from(candidate.keys.clone()));
        if admission.admitted.contains(&i) {
            let active: Vec<&String> = candidate
                .keys
                .iter()
                .filter(|k| Limited::is_active_key(k))
                .collect();
            if !candidate.started && !active.is_empty() {
                first_active.insert(*id, active.into_iter().cloned().collect());
            }
            admitted.push((*id, keys));
        } else if let Some(keys) = keys {
            waiting.push((*id, keys));
        }
    }
    let (held_ids, held_until): (Vec<Uuid>, Vec<DateTime<Utc>>) = admission
        .throttled
        .iter()
        .map(|(i, until)| (candidates.keyed[*i].0, *until))
        .unzip();
    let (state_keys, state_tats): (Vec<String>, Vec<DateTime<Utc>>) = throttles
        .into_iter()
        .filter(|(key, tat)| before.get(key) != Some(tat))
        .unzip();
    let (waiting_ids, waiting_keys): (Vec<Uuid>, Vec<Value>) = waiting.into_iter().unzip();
    let (admitted_ids, admitted_keys): (Vec<Uuid>, Vec<Option<Value>>) =
        admitted.into_iter().unzip();
    let admitted_active: Vec<Option<Value>> = admitted_ids
        .iter()
        .map(|id| first_active.remove(id))
        .collect();
    let claimed = sqlx::query(LEASE)
        .bind(now.at())
        .bind(&waiting_ids)
        .bind(&waiting_keys)
        .bind(&**request.owner)
        .bind(request.lease.as_secs_f64())
        .bind(&admitted_ids)
        .bind(&admitted_keys)
        .bind(&state_keys)
        .bind(&state_tats)
        .bind(&held_ids)
        .bind(&held_until)
        .bind(&admitted_active)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    let problems = candidates
        .unkeyable
        .into_iter()
        .filter(|(id, _)| admitted_ids.contains(id))
        .collect();
    Ok((claimed, problems))
}

/// The active runs of each active key of the candidates that have not started
/// (those that have are not held by them), through `runs_active_keys`.
async fn active(
    tx: &mut PgConnection,
    candidates: &Candidates,
) -> Result<HashMap<String, u64>, Error> {
    let keys: Vec<&str> = candidates
        .keyed
        .iter()
        .filter(|(_, c, _)| !c.started)
        .flat_map(|(_, c, _)| c.keys.iter().map(String::as_str))
        .filter(|k| Limited::is_active_key(k))
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    sqlx::query(
        "SELECT k.key, count(*) AS n
         FROM flow.runs x, unnest(x.active_keys) AS k(key)
         WHERE x.active_keys && $1::text[]
           AND x.status IN ('queued', 'running', 'sleeping', 'waiting', 'blocked')
           AND k.key = ANY($1)
         GROUP BY k.key",
    )
    .bind(&keys)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?
    .iter()
    .map(|row| Ok((row.try_get("key")?, row.try_get::<i64, _>("n")? as u64)))
    .collect::<Result<_, sqlx::Error>>()
    .map_err(db_error)
}

/// The candidates of one claim, by what is known of their keys.
struct Candidates {
    /// In due order: the run, its keys, and whether they were evaluated now.
    keyed: Vec<(Uuid, Candidate, bool)>,
    /// Runs whose keys do not evaluate on their event, with why.
    unkeyable: HashMap<Uuid, String>,
}

fn candidates(rows: &[PgRow], limited: &Limited) -> Result<Candidates, Error> {
    let mut found = Candidates {
        keyed: Vec::with_capacity(rows.len()),
        unkeyable: HashMap::new(),
    };
    for row in rows {
        let read =
            |e: sqlx::Error| Error::Database(format!("a claim candidate does not read: {e}"));
        let id: Uuid = row.try_get("id").map_err(read)?;
        let function_id: String = row.try_get("function_id").map_err(read)?;
        // Evaluated every time, so that a run keyed under another configuration
        // (a rule added, a key changed) counts under the keys it has now.
        let stored: Option<Vec<String>> = row.try_get("keys").map_err(read)?;
        let event = StoredEvent {
            id: EventId(row.try_get("event_id").map_err(read)?),
            name: row.try_get("name").map_err(read)?,
            data: row.try_get("data").map_err(read)?,
            ts: row.try_get("ts").map_err(read)?,
        };
        let keys = match limited.keys(&function_id, &event) {
            Ok(keys) => keys,
            Err(problem) => {
                found.unkeyable.insert(id, problem);
                continue;
            }
        };
        let fresh = stored.as_ref() != Some(&keys);
        let started: bool = row.try_get("started").map_err(read)?;
        found.keyed.push((
            id,
            Candidate {
                function_id,
                keys,
                started,
            },
            fresh,
        ));
    }
    Ok(found)
}

/// Takes transaction-scoped advisory locks of `class` on `keys` (each key's hash
/// folded to 32 bits), sorted and once each: every locker takes them in one
/// order, so two never deadlock. Held until the transaction ends.
pub(crate) async fn lock_keys(
    tx: &mut PgConnection,
    class: i32,
    keys: impl IntoIterator<Item = impl AsRef<str>>,
) -> Result<(), Error> {
    let mut hashes: Vec<i32> = keys
        .into_iter()
        .map(|k| fold(key_hash(k.as_ref())))
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    sqlx::query("SELECT count(pg_advisory_xact_lock($1, h)) FROM unnest($2::integer[]) AS h")
        .bind(class)
        .bind(&hashes)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// A key's 64-bit hash folded into the 32 bits of an advisory lock's second key.
fn fold(hash: i64) -> i32 {
    ((hash >> 32) ^ hash) as i32
}
