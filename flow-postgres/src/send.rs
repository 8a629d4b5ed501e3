//! Sending events: store them and create their runs in one transaction, on a
//! connection of the store's or inside the caller's own transaction.

use std::collections::HashMap;

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, Row, Transaction};
use uuid::Uuid;

use flow_core::catalog::{self, CATALOG_RELOADS, CatalogCache, CatalogRow, SkipReason, Skipped};
use flow_core::store::SendReceipt;
use flow_core::{Error, EventId, IntoEvent, Limits, NewEvent, Now, RunId};

use crate::groups::Joining;
use sqlx::Connection;

use crate::db_error;

/// Sends events inside the caller's transaction: they (and the runs they start)
/// commit or roll back with the caller's own writes, and workers are notified on
/// commit.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let mut tx = pool.begin().await?;
/// sqlx::query("INSERT INTO users (email) VALUES ('a@example.com')").execute(&mut *tx).await?;
/// let event = flow_core::NewEvent::raw("app/user.created", serde_json::json!({"email": "a@example.com"}))?;
/// flow_postgres::send_in(&mut tx, [event], &flow_core::Limits::DEFAULT).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
pub async fn send_in<E: IntoEvent>(
    tx: &mut Transaction<'_, Postgres>,
    events: impl IntoIterator<Item = E>,
    limits: &Limits,
) -> Result<SendReceipt, Error> {
    let events = flow_core::prepare(events, limits)?;
    let ids = new_event_ids(events.len());
    // No catalog kept between calls: a send whose events some function's rules
    // concern loads it (one more statement), others cost nothing more.
    send_on(tx, &events, &ids, Now::Database, &CatalogCache::default()).await
}

/// Fresh ids for the events of one send, made once: a send tried again after a
/// transient failure keeps them, and so can tell whether its first try committed.
pub(crate) fn new_event_ids(count: usize) -> Vec<EventId> {
    (0..count).map(|_| EventId(Uuid::now_v7())).collect()
}

/// The statements of a send, on one connection, with the events' fresh ids.
/// Atomic only inside a transaction when producer ids need the dedupe statement;
/// without them it is one statement.
pub(crate) async fn send_on(
    conn: &mut PgConnection,
    events: &[NewEvent],
    fresh_ids: &[EventId],
    now: Now,
    catalog: &CatalogCache,
) -> Result<SendReceipt, Error> {
    let mut event_ids = fresh_ids.to_vec();
    let accepted = dedupe(conn, events, &mut event_ids, now).await?;
    let duplicates = events.len() - accepted.len();

    let mut ids = Vec::with_capacity(accepted.len());
    let mut names = Vec::with_capacity(accepted.len());
    let mut datas = Vec::with_capacity(accepted.len());
    let mut producer_ids = Vec::with_capacity(accepted.len());
    let mut timestamps = Vec::with_capacity(accepted.len());
    for &i in &accepted {
        let event = &events[i];
        ids.push(event_ids[i].0);
        names.push(event.name().to_owned());
        datas.push(event.data().clone());
        producer_ids.push(event.producer_id().map(str::to_owned));
        timestamps.push(event.timestamp());
    }
    let mut tail = Tail::default();
    let mut runs = Vec::new();
    let mut unevaluated = Vec::new();
    let mut reloads = 0;
    while !ids.is_empty() {
        // Decided with the catalog as last loaded; the statement refuses a stale one.
        let current = catalog.get();
        let decided = current.decide(
            accepted.iter().map(|&i| (i, event_ids[i], &events[i])),
            now.at().unwrap_or_else(chrono::Utc::now),
        );
        let joining: Vec<Joining> = decided
            .decided
            .iter()
            .filter_map(|d| {
                Some(Joining {
                    event: d.event.0,
                    function: d.function.clone(),
                    position: d.position,
                    group: d.group.clone()?,
                })
            })
            .collect();
        let keyed = Decided::of(decided.decided);
        unevaluated = decided.unevaluated;
        let (known_ids, known_hashes) = current.known(names.iter().map(String::as_str));
        let statement = sqlx::query(SEND)
            .bind(&ids)
            .bind(&names)
            .bind(&datas)
            .bind(&producer_ids)
            .bind(&timestamps)
            .bind(now.at())
            .bind(&keyed.events)
            .bind(&keyed.functions)
            .bind(&keyed.keys)
            .bind(&keyed.positions)
            .bind(&known_ids)
            .bind(&known_hashes)
            .bind(&keyed.priorities)
            .bind(&keyed.singles)
            .bind(&keyed.modes)
            .bind(&keyed.filtered)
            .bind(&keyed.rate_keys)
            .bind(&keyed.rate_limits)
            .bind(&keyed.rate_periods)
            .bind(&keyed.rate_reasons)
            .bind(&keyed.grouped);
        let locked = keyed.locked_keys();
        if locked.is_empty() {
            let rows = statement.fetch_all(&mut *conn).await.map_err(db_error)?;
            (runs, tail) = Tail::take(rows)?;
            if !tail.stale {
                resolve_raced_waits(conn, &tail, now).await?;
                break;
            }
        } else {
            // The singleton and rate-limit keys' locks are held to the end of the
            // transaction (a savepoint when the caller already has one).
            let mut tx = conn.begin().await.map_err(db_error)?;
            crate::concurrency::lock_keys(&mut tx, SEND_LOCK_CLASS, &locked).await?;
            let rows = statement.fetch_all(&mut *tx).await.map_err(db_error)?;
            (runs, tail) = Tail::take(rows)?;
            if !tail.stale {
                resolve_raced_waits(&mut tx, &tail, now).await?;
                // Grouped events have group keys, so they are placed here, under
                // their locks.
                runs.extend(crate::groups::join(&mut tx, &tail.joining(&joining), now).await?);
                tx.commit().await.map_err(db_error)?;
                break;
            }
        }
        if reloads == CATALOG_RELOADS {
            return Err(Error::Unavailable(format!(
                "the function catalog changed under {CATALOG_RELOADS} sends in a row \
                 (workers announcing new rules); nothing was stored, send again"
            )));
        }
        reloads += 1;
        catalog.reload(load_catalog(conn).await?);
    }
    let mut receipt = receipt(
        event_ids,
        &ids,
        &names,
        runs,
        &tail.awaited,
        duplicates,
        tail.skipped(&ids)?,
    )?;
    receipt.unevaluated = unevaluated;
    Ok(receipt)
}

/// The advisory lock class of singleton and rate-limit keys ("flos" in ASCII).
const SEND_LOCK_CLASS: i32 = 0x666c_6f73;

/// The send-time rules of every function that has some, as announced.
async fn load_catalog(conn: &mut PgConnection) -> Result<Vec<CatalogRow>, Error> {
    let rows = sqlx::query(
        "SELECT f.id, t.trigger, f.send_rules_hash, f.send_rules FROM flow.functions f
         JOIN flow.function_triggers t ON t.function_id = f.id
         WHERE f.send_rules IS NOT NULL",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("id").map_err(db_error)?,
                row.try_get("trigger").map_err(db_error)?,
                row.try_get("send_rules_hash").map_err(db_error)?,
                row.try_get("send_rules").map_err(db_error)?,
            ))
        })
        .collect()
}

/// What the rules decided for a send, as the statement's arrays.
#[derive(Default)]
struct Decided {
    events: Vec<Uuid>,
    functions: Vec<String>,
    keys: Vec<Option<String>>,
    positions: Vec<i32>,
    priorities: Vec<Option<i32>>,
    singles: Vec<Option<String>>,
    modes: Vec<Option<&'static str>>,
    filtered: Vec<bool>,
    rate_keys: Vec<Option<String>>,
    rate_limits: Vec<Option<i32>>,
    /// Milliseconds.
    rate_periods: Vec<Option<i64>>,
    /// The error a run skipped by the rate limit is recorded with.
    rate_reasons: Vec<Option<String>>,
    /// Its run joins a group (`batch_events`, `debounce`), placed after the send
    /// statement ([`crate::groups`]).
    grouped: Vec<bool>,
    /// The group keys (`function \x1f key`), locked with the others.
    group_keys: Vec<String>,
}

impl Decided {
    fn of(decided: Vec<catalog::Decided>) -> Decided {
        let mut arrays = Decided::default();
        for d in decided {
            arrays.events.push(d.event.0);
            arrays.grouped.push(d.group.is_some());
            if let Some(group) = &d.group {
                arrays
                    .group_keys
                    .push(crate::groups::lock_key(&d.function, &group.key));
            }
            arrays
                .rate_reasons
                .push(d.rate.as_ref().map(|r| r.reason(&d.function)));
            arrays.functions.push(d.function);
            arrays.keys.push(d.key);
            arrays
                .positions
                .push(i32::try_from(d.position).unwrap_or(i32::MAX));
            // Held to ±MAX_PRIORITY by the catalog.
            arrays
                .priorities
                .push(d.priority.map(|p| i32::try_from(p).unwrap_or(0)));
            arrays
                .modes
                .push(d.singleton.as_ref().map(|(_, m)| m.as_str()));
            arrays.filtered.push(d.filtered);
            arrays.rate_limits.push(
                d.rate
                    .as_ref()
                    .map(|r| i32::try_from(r.limit).unwrap_or(i32::MAX)),
            );
            arrays.rate_periods.push(
                d.rate
                    .as_ref()
                    .map(|r| i64::try_from(r.period.as_millis()).unwrap_or(i64::MAX)),
            );
            arrays.rate_keys.push(d.rate.map(|r| r.key));
            arrays.singles.push(d.singleton.map(|(key, _)| key));
        }
        arrays
    }

    /// The singleton keys (`function \x1f key`) and rate-limit keys (`rate \x1f
    /// function \x1f key`) decided: a send locks them through its statement, so
    /// that it sees each key's latest holder or arrival time, and concurrent
    /// sends of a key take turns.
    fn locked_keys(&self) -> Vec<String> {
        let singles = self
            .functions
            .iter()
            .zip(&self.singles)
            .filter_map(|(function, single)| Some(format!("{function}\u{1f}{}", single.as_ref()?)));
        let rates = self
            .functions
            .iter()
            .zip(&self.rate_keys)
            .filter_map(|(function, key)| {
                Some(format!("rate\u{1f}{function}\u{1f}{}", key.as_ref()?))
            });
        singles
            .chain(rates)
            .chain(self.group_keys.iter().cloned())
            .collect()
    }
}

/// The send statement's last row.
#[derive(Default)]
struct Tail {
    stale: bool,
    raced: Option<(Vec<String>, Vec<String>, Vec<String>)>,
    awaited: Vec<String>,
    skipped: Option<SkippedRows>,
    /// The (event, function) pairs whose runs join groups: they started no run
    /// of their own.
    grouped: Vec<(Uuid, String)>,
}

/// The runs a send skipped: event, function, why, key and the active run, as
/// arrays of its last row.
struct SkippedRows {
    events: Vec<Uuid>,
    functions: Vec<String>,
    why: Vec<String>,
    keys: Vec<Option<String>>,
    active: Vec<Option<Uuid>>,
}

impl Tail {
    /// The statement's rows read: the runs it created (event, function, run)
    /// and its last row (no run id).
    fn take(mut rows: Vec<PgRow>) -> Result<(Vec<StartedRun>, Tail), Error> {
        let at = rows
            .iter()
            .position(|row| matches!(row.try_get::<Option<Uuid>, _>("id"), Ok(None)));
        let last = at.map(|at| rows.remove(at));
        let runs = run_triples(&rows)?;
        let Some(last) = last else {
            return Ok((runs, Tail::default()));
        };
        let get = |column: &str| -> Result<Option<Vec<String>>, Error> {
            last.try_get(column).map_err(db_error)
        };
        let raced = match get("raced_names")? {
            Some(names) => Some((
                names,
                get("raced_fields")?.unwrap_or_default(),
                get("raced_values")?.unwrap_or_default(),
            )),
            None => None,
        };
        let skipped_events: Option<Vec<Uuid>> = last.try_get("skipped_events").map_err(db_error)?;
        let grouped_events: Option<Vec<Uuid>> = last.try_get("grouped_events").map_err(db_error)?;
        let grouped = grouped_events
            .unwrap_or_default()
            .into_iter()
            .zip(get("grouped_functions")?.unwrap_or_default())
            .collect();
        let tail = Tail {
            grouped,
            stale: last
                .try_get::<Option<bool>, _>("stale")
                .map_err(db_error)?
                .unwrap_or(false),
            raced,
            awaited: get("awaited_names")?.unwrap_or_default(),
            skipped: match skipped_events {
                Some(events) => Some(SkippedRows {
                    events,
                    functions: get("skipped_functions")?.unwrap_or_default(),
                    why: get("skipped_why")?.unwrap_or_default(),
                    keys: last
                        .try_get::<Option<Vec<Option<String>>>, _>("skipped_keys")
                        .map_err(db_error)?
                        .unwrap_or_default(),
                    active: last
                        .try_get::<Option<Vec<Option<Uuid>>>, _>("skipped_active")
                        .map_err(db_error)?
                        .unwrap_or_default(),
                }),
                None => None,
            },
        };
        Ok((runs, tail))
    }

    /// Those of `joining` the statement launched (a rate limit skipped none of
    /// them).
    fn joining(&self, joining: &[Joining]) -> Vec<Joining> {
        joining
            .iter()
            .filter(|j| {
                self.grouped
                    .iter()
                    .any(|(event, function)| *event == j.event && *function == j.function)
            })
            .cloned()
            .collect()
    }

    /// The runs skipped by a rule, in the order of the events sent (`ids`).
    fn skipped(&self, ids: &[Uuid]) -> Result<Vec<Skipped>, Error> {
        let Some(rows) = &self.skipped else {
            return Ok(Vec::new());
        };
        let mut skipped = Vec::with_capacity(rows.events.len());
        for (i, event) in rows.events.iter().enumerate() {
            let key = rows.keys.get(i).cloned().flatten().unwrap_or_default();
            let reason = match rows.why.get(i).map(String::as_str) {
                Some("idempotency") => SkipReason::Idempotency { key },
                Some("singleton") => SkipReason::Singleton {
                    key,
                    active: RunId(rows.active.get(i).copied().flatten().unwrap_or_default()),
                },
                Some("singleton_in_send") => SkipReason::SingletonInSend { key },
                Some("filtered") => SkipReason::Filtered,
                Some("rate_limit") => SkipReason::RateLimited {
                    key,
                    run: RunId(rows.active.get(i).copied().flatten().unwrap_or_default()),
                },
                other => {
                    return Err(Error::Database(format!(
                        "the send statement skipped a run for an unknown reason {other:?}"
                    )));
                }
            };
            let position = ids.iter().position(|id| id == event).unwrap_or(usize::MAX);
            let skip = Skipped {
                event: EventId(*event),
                function: rows.functions.get(i).cloned().unwrap_or_default(),
                reason,
            };
            skipped.push((position, skip));
        }
        skipped.sort_by(|a, b| (a.0, &a.1.function).cmp(&(b.0, &b.1.function)));
        Ok(skipped.into_iter().map(|(_, s)| s).collect())
    }
}

/// The send statement: the events, a run per matching function (none where its
/// `if` is false; a keyed run only if its idempotency or singleton key is free,
/// due earlier or later by its priority; recorded as skipped when its rate-limit
/// key is at the limit),
/// the wait keys of their awaited fields,
/// the waits they resolve, the runs they cancel (`cancel_on`), and one NOTIFY
/// when any run was created or woken (delivered at commit). An event without its
/// own timestamp takes the send's time. When a function the events trigger has
/// send-time rules whose hash differs from the one the sender decided with
/// (`$11`, `$12`), it stores nothing and says so. Its last row (no run id) says
/// that, lists the runs skipped by a key, the keys whose waits it could not see
/// ([`resolve_raced_waits`]), and the names sent that a wait or a `cancel_on`
/// awaits, and the (event, function) pairs whose runs join groups.
const SEND: &str = concat!(
    "WITH clock AS (
         SELECT COALESCE($6::timestamptz, now()) AS now,
                COALESCE($6::timestamptz, clock_timestamp()) AS stored_at
     ), stale AS (
         SELECT 1 FROM flow.functions f
         WHERE f.id IN (SELECT function_id FROM flow.function_triggers
                        WHERE trigger = ANY($2::text[]))
           AND f.send_rules_hash IS DISTINCT FROM
               (SELECT k.hash FROM unnest($11::text[], $12::text[]) AS k(id, hash) WHERE k.id = f.id)
         LIMIT 1
     ), ev AS (
         INSERT INTO flow.events (id, name, data, producer_id, ts, received_at)
         SELECT u.id, u.name, u.data, u.producer_id, COALESCE(u.ts, clock.now), clock.now
         FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::text[], $5::timestamptz[])
              AS u(id, name, data, producer_id, ts), clock
         WHERE NOT EXISTS (SELECT 1 FROM stale)
         RETURNING id, name, data, ts
     ), planned AS (
         -- Referenced several times, so computed once: each run's id is fixed here.
         SELECT flow.uuid_v7() AS id, f.function_id, ev.id AS event_id, ev.ts, k.key,
                k.position,
                COALESCE(k.priority, 0) AS priority, k.single, k.mode,
                COALESCE(k.filtered, false) AS filtered, k.rate_key, k.rate_lim,
                k.rate_ms * interval '1 millisecond' AS rate_period, k.rate_reason,
                COALESCE(k.grouped, false) AS grouped
         FROM ev JOIN flow.function_triggers f ON f.trigger = ev.name
         LEFT JOIN unnest($7::uuid[], $8::text[], $9::text[], $10::int[], $13::int[],
                          $14::text[], $15::text[], $16::bool[], $17::text[], $18::int[],
                          $19::bigint[], $20::text[], $21::bool[])
             AS k(event_id, function_id, key, position, priority, single, mode, filtered,
                  rate_key, rate_lim, rate_ms, rate_reason, grouped)
             ON k.event_id = ev.id AND k.function_id = f.function_id
     ), eligible AS (
         -- An event whose `if` is false for a function starts nothing of it, and
         -- takes no key.
         SELECT * FROM planned WHERE NOT filtered
     ), holders AS (
         -- The active run holding each singleton key the events name (the sender
         -- holds the keys' locks, so this is the latest holder).
         SELECT s.function_id, s.key, s.run_id FROM flow.singletons s
         JOIN flow.runs h ON h.id = s.run_id AND h.status NOT IN ('completed', 'failed', 'cancelled')
         WHERE (s.function_id, s.key) IN
               (SELECT function_id, single FROM eligible WHERE single IS NOT NULL)
     ), picked AS (
         -- Per singleton key, the event of the send whose run may take it: the
         -- first (mode skip) or the last (mode cancel).
         SELECT DISTINCT ON (function_id, single) id FROM eligible
         WHERE single IS NOT NULL
         ORDER BY function_id, single, CASE WHEN mode = 'cancel' THEN -position ELSE position END
     ), single_ok AS (
         SELECT p.* FROM eligible p
         WHERE p.single IS NULL
            OR (p.id IN (SELECT id FROM picked)
                AND (p.mode = 'cancel'
                     OR NOT EXISTS (SELECT 1 FROM holders h
                                    WHERE h.function_id = p.function_id AND h.key = p.single)))
     ), claimed_keys AS (
         -- The first event of a key in the send claims it; an existing claim
         -- yields only once expired (a concurrent send's claim is waited for).
         INSERT INTO flow.idempotency_keys AS i (function_id, key, run_id, expires_at)
         SELECT DISTINCT ON (p.function_id, p.key) p.function_id, p.key, p.id,
                clock.now + interval '24 hours'
         FROM single_ok p, clock
         WHERE p.key IS NOT NULL
         ORDER BY p.function_id, p.key, p.position
         ON CONFLICT (function_id, key) DO UPDATE
             SET run_id = EXCLUDED.run_id, expires_at = EXCLUDED.expires_at
             WHERE i.expires_at <= (SELECT now FROM clock)
         RETURNING run_id
     ), started AS (
         SELECT * FROM single_ok p WHERE p.key IS NULL OR p.id IN (SELECT run_id FROM claimed_keys)
     ), rated AS (
         -- Rate limits (GCRA, migration 18), last: only an event that would start
         -- a run counts against its key. The n-th such event of a key in the send
         -- starts while the key's arrival time, moved on by the n - 1 before it,
         -- is within the tolerance (`limit` at once, then one per interval).
         SELECT p.id, p.function_id, p.rate_key, p.rate_period / p.rate_lim AS step,
                p.rate_period - p.rate_period / p.rate_lim AS tolerance,
                row_number() OVER (PARTITION BY p.function_id, p.rate_key
                                   ORDER BY p.position) AS nth
         FROM started p WHERE p.rate_key IS NOT NULL
     ), rate_base AS (
         -- The sender holds the keys' locks, so this is the latest arrival time.
         SELECT DISTINCT ON (r.function_id, r.rate_key) r.function_id, r.rate_key, r.step,
                GREATEST(COALESCE(t.tat, clock.now), clock.now) AS base
         FROM rated r CROSS JOIN clock
         LEFT JOIN flow.rate_limits t ON t.function_id = r.function_id AND t.key = r.rate_key
     ), rate_admitted AS (
         SELECT r.id, r.function_id, r.rate_key FROM rated r
         JOIN rate_base b ON b.function_id = r.function_id AND b.rate_key = r.rate_key
         WHERE b.base - (SELECT now FROM clock) + (r.nth - 1) * r.step <= r.tolerance
     ), rate_state AS (
         INSERT INTO flow.rate_limits AS t (function_id, key, tat)
         SELECT b.function_id, b.rate_key, b.base + count(*) * b.step
         FROM rate_base b
         JOIN rate_admitted a ON a.function_id = b.function_id AND a.rate_key = b.rate_key
         GROUP BY b.function_id, b.rate_key, b.base, b.step
         ON CONFLICT (function_id, key) DO UPDATE SET tat = EXCLUDED.tat
     ), launched AS (
         SELECT * FROM started p
         WHERE p.rate_key IS NULL OR p.id IN (SELECT id FROM rate_admitted)
     ), rate_skipped AS (
         -- Recorded, ended: visible through the client with the reason.
         INSERT INTO flow.runs
             (id, function_id, event_id, status, not_before, created_at, finished_at, error)
         SELECT p.id, p.function_id, p.event_id, 'skipped', clock.now, clock.now, clock.now,
                p.rate_reason
         FROM started p, clock
         WHERE p.rate_key IS NOT NULL AND p.id NOT IN (SELECT id FROM rate_admitted)
     ), taken AS (
         INSERT INTO flow.singletons AS s (function_id, key, run_id)
         SELECT function_id, single, id FROM launched WHERE single IS NOT NULL
         ON CONFLICT (function_id, key) DO UPDATE SET run_id = EXCLUDED.run_id
     ), superseded AS (
         -- Mode cancel: the active runs whose key a started run took.
         SELECT h.run_id,
                'cancelled by event ' || st.event_id || ', whose run ' || st.id
                || ' took singleton key `' || h.key || '` (singleton mode cancel)' AS reason
         FROM holders h
         JOIN launched st ON st.function_id = h.function_id AND st.single = h.key
                         AND st.mode = 'cancel'
     ), skipped AS (
         -- `active`: the active run of a singleton key, or the skipped run of a
         -- rate-limit key.
         SELECT p.event_id, p.function_id,
                CASE WHEN p.filtered THEN 'filtered'
                     WHEN p.id IN (SELECT id FROM started) THEN 'rate_limit'
                     WHEN p.id IN (SELECT id FROM single_ok) THEN 'idempotency'
                     WHEN p.mode = 'skip' AND h.run_id IS NOT NULL THEN 'singleton'
                     ELSE 'singleton_in_send' END AS why,
                CASE WHEN p.id IN (SELECT id FROM started) THEN p.rate_key
                     WHEN p.id IN (SELECT id FROM single_ok) THEN p.key
                     ELSE p.single END AS key,
                CASE WHEN p.id IN (SELECT id FROM started) THEN p.id ELSE h.run_id END AS active
         FROM planned p
         LEFT JOIN holders h ON h.function_id = p.function_id AND h.key = p.single
         WHERE p.id NOT IN (SELECT id FROM launched)
     ), r AS (
         -- A priority moves the run's due time: the claim takes runs in due order.
         -- An event whose timestamp is in the future delays its runs until then.
         INSERT INTO flow.runs (id, function_id, event_id, status, not_before, created_at)
         SELECT p.id, p.function_id, p.event_id, 'queued',
                CASE WHEN p.ts > clock.now THEN p.ts
                     ELSE clock.now - p.priority * interval '1 second' END,
                clock.now
         FROM launched p, clock
         -- A grouped event joins its group after this statement (crate::groups).
         WHERE NOT p.grouped
         RETURNING id, event_id, function_id
     ), keys AS (
         -- Each awaited field of each event (a value too long to index, over
         -- MATCH_VALUE_BYTES, is never keyed: a wait refuses such values).
         SELECT ev.id, ev.name, f.field,
                CASE WHEN f.field = '' THEN '' ELSE (ev.data -> f.field)::text END AS value
         FROM ev JOIN flow.awaited_fields f ON f.name = ev.name
         WHERE f.field = '' OR (jsonb_typeof(ev.data) = 'object' AND ev.data ? f.field)
     ), latest AS (
         -- The rendezvous with parks (see migration 6), locked in key order.
         INSERT INTO flow.wait_keys AS k (name, field, value, event_id, event_at)
         SELECT DISTINCT ON (name, field, value) name, field, value, id, clock.stored_at
         FROM keys, clock
         WHERE octet_length(value) <= 1024
         ORDER BY name, field, value, id DESC
         ON CONFLICT (name, field, value) DO UPDATE
             SET event_id = CASE WHEN k.event_at IS NULL OR EXCLUDED.event_at >= k.event_at
                                 THEN EXCLUDED.event_id ELSE k.event_id END,
                 event_at = GREATEST(k.event_at, EXCLUDED.event_at)
         RETURNING k.name, k.field, k.value, k.waits
     ), cancel_hits AS (
         -- The runs the sent events cancel (cancel_on, migration 9), each by the
         -- first that matches, and the runs a singleton key's new run supersedes.
         SELECT DISTINCT ON (c.run_id) c.run_id, c.reason
         FROM (SELECT x.run_id, flow.cancel_on_reason(keys.name, keys.id, keys.field) AS reason,
                      1 AS rank, keys.id AS ord
               FROM keys
               JOIN flow.cancel_waits x
                   ON x.name = keys.name AND x.field = keys.field AND x.value = keys.value
               UNION ALL
               SELECT run_id, reason, 0, NULL FROM superseded) AS c
         ORDER BY c.run_id, c.rank, c.ord
     ), found AS (
         -- The first of the sent events that matches each open wait of a run
         -- that is not cancelled.
         SELECT DISTINCT ON (x.run_id, x.key) x.run_id, x.key, x.position, x.token,
                keys.id AS event_id
         FROM keys
         JOIN flow.waits x ON x.name = keys.name AND x.field = keys.field AND x.value = keys.value
         WHERE x.run_id NOT IN (SELECT run_id FROM cancel_hits)
         ORDER BY x.run_id, x.key, keys.id
     ",
    crate::waits::resolve_sql!("ev"),
    "), ",
    crate::cancel::cancelling_sql!(", cancel_hits h", "r.id = h.run_id", "h.reason"),
    ", raced AS (
         SELECT l.name, l.field, l.value FROM latest l
         LEFT JOIN flow.wait_keys seen
             ON seen.name = l.name AND seen.field = l.field AND seen.value = l.value
         WHERE l.waits <> COALESCE(seen.waits, 0)
     ), notified AS (
         SELECT pg_notify('flow_wakeup', '')
         FROM (SELECT 1 FROM r UNION ALL SELECT 1 FROM woken LIMIT 1) AS any_run
     )
     SELECT r.id, r.event_id, r.function_id, (SELECT count(*) FROM notified) AS notified,
            NULL::text[] AS raced_names, NULL::text[] AS raced_fields,
            NULL::text[] AS raced_values, NULL::text[] AS awaited_names,
            NULL::bool AS stale, NULL::uuid[] AS skipped_events,
            NULL::text[] AS skipped_functions, NULL::text[] AS skipped_keys,
            NULL::text[] AS skipped_why, NULL::uuid[] AS skipped_active,
            NULL::uuid[] AS grouped_events, NULL::text[] AS grouped_functions
     FROM r
     UNION ALL
     SELECT NULL, NULL, NULL,
            (SELECT count(*) FROM notified) + 0 * (SELECT count(*) FROM announced)
                + 0 * (SELECT count(*) FROM freed),
            (SELECT array_agg(name) FROM raced), (SELECT array_agg(field) FROM raced),
            (SELECT array_agg(value) FROM raced),
            (SELECT array_agg(DISTINCT a.name) FROM flow.awaited_fields a
             WHERE a.name IN (SELECT name FROM ev)),
            EXISTS (SELECT 1 FROM stale),
            (SELECT array_agg(event_id) FROM skipped),
            (SELECT array_agg(function_id) FROM skipped),
            (SELECT array_agg(key) FROM skipped),
            (SELECT array_agg(why) FROM skipped),
            (SELECT array_agg(active) FROM skipped),
            (SELECT array_agg(event_id ORDER BY id) FROM launched WHERE grouped),
            (SELECT array_agg(function_id ORDER BY id) FROM launched WHERE grouped)"
);

/// Resolves the waits on the keys the send statement's last row lists, if any:
/// a park registered them after the send's statement began, and committed before
/// the send reached their keys, so the send saw their count but not the waits.
/// They are resolved inside the send's transaction when it has one, else right
/// after its commit.
async fn resolve_raced_waits(conn: &mut PgConnection, tail: &Tail, now: Now) -> Result<(), Error> {
    if let Some((names, fields, values)) = &tail.raced {
        crate::waits::resolve_raced(conn, names, fields, values, now).await?;
    }
    Ok(())
}

/// The receipt of a send tried before with these fresh ids, read back, when its
/// first try committed though its answer was lost (the connection broke after the
/// commit); `None` when nothing of it is stored, so that it must be sent.
pub(crate) async fn stored_receipt(
    conn: &mut PgConnection,
    events: &[NewEvent],
    fresh_ids: &[EventId],
) -> Result<Option<SendReceipt>, Error> {
    let fresh: Vec<Uuid> = fresh_ids.iter().map(|id| id.0).collect();
    let stored = sqlx::query("SELECT id, name FROM flow.events WHERE id = ANY($1)")
        .bind(&fresh)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    if stored.is_empty() {
        return Ok(None);
    }
    let mut names: HashMap<Uuid, String> = HashMap::new();
    for row in &stored {
        names.insert(
            row.try_get("id").map_err(db_error)?,
            row.try_get("name").map_err(db_error)?,
        );
    }
    // An event not stored was a duplicate: its id is the one its producer id names.
    let pids: Vec<String> = events
        .iter()
        .zip(&fresh)
        .filter(|(_, id)| !names.contains_key(id))
        .filter_map(|(event, _)| event.producer_id().map(str::to_owned))
        .collect();
    let mut earlier: HashMap<String, Uuid> = HashMap::new();
    if !pids.is_empty() {
        for row in sqlx::query(
            "SELECT producer_id, event_id FROM flow.event_ids WHERE producer_id = ANY($1)",
        )
        .bind(&pids)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?
        {
            earlier.insert(
                row.try_get(0).map_err(db_error)?,
                row.try_get(1).map_err(db_error)?,
            );
        }
    }
    let event_ids = events
        .iter()
        .zip(fresh_ids)
        .map(
            |(event, id)| match (names.contains_key(&id.0), event.producer_id()) {
                (false, Some(pid)) => earlier.get(pid).map_or(*id, |e| EventId(*e)),
                _ => *id,
            },
        )
        .collect();
    let ids: Vec<Uuid> = fresh
        .iter()
        .filter(|id| names.contains_key(id))
        .copied()
        .collect();
    let stored_names: Vec<String> = ids.iter().map(|id| names[id].clone()).collect();
    // A run a rate limit skipped is recorded, but the send started nothing. A
    // grouped event is listed with the run of its group.
    let run_rows = sqlx::query(
        "SELECT id, event_id, function_id FROM flow.runs
         WHERE event_id = ANY($1) AND status <> 'skipped'
         UNION
         SELECT re.run_id, re.event_id, r.function_id FROM flow.run_events re
         JOIN flow.runs r ON r.id = re.run_id
         WHERE re.event_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let duplicates = events.len() - ids.len();
    let awaited: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT name FROM flow.awaited_fields WHERE name = ANY($1)")
            .bind(&stored_names)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?;
    receipt(
        event_ids,
        &ids,
        &stored_names,
        run_triples(&run_rows)?,
        &awaited,
        duplicates,
        Vec::new(),
    )
    .map(Some)
}

/// A send's receipt from the events it stored (`ids`, with their `names`) and the
/// rows of the runs they started: runs in the order of the events sent (then by
/// function), whatever order the database inserted them in. An event that started
/// no run is unmatched unless its name is `awaited` (by a wait or a `cancel_on`)
/// or a function's rules `skipped` its run.
fn receipt(
    event_ids: Vec<EventId>,
    ids: &[Uuid],
    names: &[String],
    runs: Vec<StartedRun>,
    awaited: &[String],
    duplicates: usize,
    skipped: Vec<Skipped>,
) -> Result<SendReceipt, Error> {
    let position: HashMap<Uuid, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut found: Vec<_> = runs
        .into_iter()
        .map(|(event, function, run)| {
            (
                position.get(&event).copied().unwrap_or(usize::MAX),
                function,
                event,
                run,
            )
        })
        .collect();
    found.sort();
    let mut receipt = SendReceipt {
        event_ids,
        runs: found
            .into_iter()
            .map(|(_, _, event, run)| (EventId(event), RunId(run)))
            .collect(),
        duplicates,
        ..SendReceipt::default()
    };
    receipt.skipped = skipped;
    for (id, name) in ids.iter().zip(names) {
        if !receipt.runs.iter().any(|(event, _)| event.0 == *id)
            && !receipt.skipped.iter().any(|s| s.event.0 == *id)
            && !awaited.contains(name)
        {
            receipt.note_unmatched(name);
        }
    }
    Ok(receipt)
}

/// A run a send started or an event joined: (event, function, run).
pub(crate) type StartedRun = (Uuid, String, Uuid);

/// (event, function, run) of rows with those columns (`id` the run's).
pub(crate) fn run_triples(rows: &[PgRow]) -> Result<Vec<StartedRun>, Error> {
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("event_id").map_err(db_error)?,
                row.try_get("function_id").map_err(db_error)?,
                row.try_get("id").map_err(db_error)?,
            ))
        })
        .collect()
}

/// Claims the producer ids for 24 hours (first write wins, also between
/// concurrent sends); returns the indexes of the events to store. A duplicate's
/// entry in `event_ids` becomes the earlier event's id.
async fn dedupe(
    conn: &mut PgConnection,
    events: &[NewEvent],
    event_ids: &mut [EventId],
    now: Now,
) -> Result<Vec<usize>, Error> {
    let mut first_of: HashMap<&str, usize> = HashMap::new();
    let mut in_batch_duplicate: Vec<(usize, usize)> = Vec::new();
    for (i, event) in events.iter().enumerate() {
        if let Some(pid) = event.producer_id() {
            match first_of.get(pid) {
                Some(&first) => in_batch_duplicate.push((i, first)),
                None => {
                    first_of.insert(pid, i);
                }
            }
        }
    }
    if first_of.is_empty() {
        return Ok((0..events.len()).collect());
    }
    let pids: Vec<String> = first_of.keys().map(|p| p.to_string()).collect();
    let eids: Vec<Uuid> = pids
        .iter()
        .map(|p| event_ids[first_of[p.as_str()]].0)
        .collect();
    let rows = sqlx::query(
        "INSERT INTO flow.event_ids (producer_id, event_id, expires_at)
         SELECT u.pid, u.eid, COALESCE($3::timestamptz, now()) + $4 * interval '1 second'
         FROM unnest($1::text[], $2::uuid[]) AS u(pid, eid)
         ON CONFLICT (producer_id) DO UPDATE
             SET event_id = EXCLUDED.event_id, expires_at = EXCLUDED.expires_at
             WHERE flow.event_ids.expires_at <= COALESCE($3::timestamptz, now())
         RETURNING producer_id",
    )
    .bind(&pids)
    .bind(&eids)
    .bind(now.at())
    .bind(flow_core::store::DEDUPE_WINDOW.num_seconds() as f64)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let fresh: std::collections::HashSet<String> = rows
        .iter()
        .map(|r| r.try_get::<String, _>(0).map_err(db_error))
        .collect::<Result<_, _>>()?;
    let seen: Vec<String> = pids
        .iter()
        .filter(|p| !fresh.contains(*p))
        .cloned()
        .collect();
    if !seen.is_empty() {
        let earlier = sqlx::query(
            "SELECT producer_id, event_id FROM flow.event_ids WHERE producer_id = ANY($1)",
        )
        .bind(&seen)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        for row in earlier {
            let pid: String = row.try_get(0).map_err(db_error)?;
            event_ids[first_of[pid.as_str()]] = EventId(row.try_get(1).map_err(db_error)?);
        }
    }
    for (dup, first) in in_batch_duplicate {
        event_ids[dup] = event_ids[first];
    }
    Ok((0..events.len())
        .filter(|&i| match events[i].producer_id() {
            None => true,
            Some(pid) => first_of[pid] == i && fresh.contains(pid),
        })
        .collect())
}
