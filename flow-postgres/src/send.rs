//! Sending events: store them and create their runs in one transaction, on a
//! connection of the store's or inside the caller's own transaction.

use std::collections::HashMap;

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, Row, Transaction};
use uuid::Uuid;

use flow_core::store::SendReceipt;
use flow_core::{Error, EventId, IntoEvent, Limits, NewEvent, Now, RunId};

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
    send_on(tx, &events, &ids, Now::Database).await
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
    let (mut run_rows, mut awaited) = (Vec::new(), Vec::new());
    if !ids.is_empty() {
        run_rows = sqlx::query(SEND)
            .bind(&ids)
            .bind(&names)
            .bind(&datas)
            .bind(&producer_ids)
            .bind(&timestamps)
            .bind(now.at())
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?;
        awaited = resolve_raced_waits(conn, &mut run_rows, now).await?;
    }
    receipt(event_ids, &ids, &names, &run_rows, &awaited, duplicates)
}

/// The send statement: the events, a run per matching function, the wait keys of
/// their awaited fields, the waits they resolve, the runs they cancel
/// (`cancel_on`), and one NOTIFY when any run was created or woken (delivered at
/// commit). An event without its own timestamp takes the send's time. Its last
/// row (no run id) lists the keys whose waits it could not see
/// ([`resolve_raced_waits`]), and the names sent that a wait or a `cancel_on`
/// awaits.
const SEND: &str = concat!(
    "WITH clock AS (
         SELECT COALESCE($6::timestamptz, now()) AS now,
                COALESCE($6::timestamptz, clock_timestamp()) AS stored_at
     ), ev AS (
         INSERT INTO flow.events (id, name, data, producer_id, ts, received_at)
         SELECT u.id, u.name, u.data, u.producer_id, COALESCE(u.ts, clock.now), clock.now
         FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::text[], $5::timestamptz[])
              AS u(id, name, data, producer_id, ts), clock
         RETURNING id, name, data, ts
     ), r AS (
         INSERT INTO flow.runs (id, function_id, event_id, status, not_before, created_at)
         SELECT flow.uuid_v7(), f.id, ev.id, 'queued', clock.now, clock.now
         FROM ev JOIN flow.functions f ON f.trigger = ev.name, clock
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
         -- first that matches.
         SELECT DISTINCT ON (x.run_id) x.run_id,
                flow.cancel_on_reason(keys.name, keys.id, keys.field) AS reason
         FROM keys
         JOIN flow.cancel_waits x
             ON x.name = keys.name AND x.field = keys.field AND x.value = keys.value
         ORDER BY x.run_id, keys.id
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
            NULL::text[] AS raced_values, NULL::text[] AS awaited_names
     FROM r
     UNION ALL
     SELECT NULL, NULL, NULL,
            (SELECT count(*) FROM notified) + 0 * (SELECT count(*) FROM announced),
            (SELECT array_agg(name) FROM raced), (SELECT array_agg(field) FROM raced),
            (SELECT array_agg(value) FROM raced),
            (SELECT array_agg(DISTINCT a.name) FROM flow.awaited_fields a
             WHERE a.name IN (SELECT name FROM ev))"
);

/// Resolves the waits on the keys the send statement's last row lists, if any,
/// and drops that row, returning the awaited names it lists: a park registered
/// them after the send's statement began, and committed before the send reached
/// their keys, so the send saw their count but not the waits. They are resolved
/// inside the send's transaction when it has one, else right after its commit.
async fn resolve_raced_waits(
    conn: &mut PgConnection,
    rows: &mut Vec<PgRow>,
    now: Now,
) -> Result<Vec<String>, Error> {
    let Some(at) = rows
        .iter()
        .position(|row| matches!(row.try_get::<Option<Uuid>, _>("id"), Ok(None)))
    else {
        return Ok(Vec::new());
    };
    // Removed in place: the receipt lists the runs in the order of the rows.
    let last = rows.remove(at);
    let names: Option<Vec<String>> = last.try_get("raced_names").map_err(db_error)?;
    if let Some(names) = names {
        let fields: Vec<String> = last.try_get("raced_fields").map_err(db_error)?;
        let values: Vec<String> = last.try_get("raced_values").map_err(db_error)?;
        crate::waits::resolve_raced(conn, &names, &fields, &values, now).await?;
    }
    let awaited: Option<Vec<String>> = last.try_get("awaited_names").map_err(db_error)?;
    Ok(awaited.unwrap_or_default())
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
    let run_rows =
        sqlx::query("SELECT id, event_id, function_id FROM flow.runs WHERE event_id = ANY($1)")
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
        &run_rows,
        &awaited,
        duplicates,
    )
    .map(Some)
}

/// A send's receipt from the events it stored (`ids`, with their `names`) and the
/// rows of the runs they started: runs in the order of the events sent (then by
/// function), whatever order the database inserted them in. An event that started
/// no run is unmatched unless its name is `awaited` (by a wait or a `cancel_on`).
fn receipt(
    event_ids: Vec<EventId>,
    ids: &[Uuid],
    names: &[String],
    run_rows: &[PgRow],
    awaited: &[String],
    duplicates: usize,
) -> Result<SendReceipt, Error> {
    let position: HashMap<Uuid, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut found = run_rows
        .iter()
        .map(|row| {
            let event: Uuid = row.try_get("event_id").map_err(db_error)?;
            let function: String = row.try_get("function_id").map_err(db_error)?;
            let run: Uuid = row.try_get("id").map_err(db_error)?;
            Ok((
                position.get(&event).copied().unwrap_or(usize::MAX),
                function,
                event,
                run,
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    found.sort();
    let mut receipt = SendReceipt {
        event_ids,
        runs: found
            .into_iter()
            .map(|(_, _, event, run)| (EventId(event), RunId(run)))
            .collect(),
        duplicates,
        unmatched: Vec::new(),
    };
    for (id, name) in ids.iter().zip(names) {
        if !receipt.runs.iter().any(|(event, _)| event.0 == *id) && !awaited.contains(name) {
            receipt.note_unmatched(name);
        }
    }
    Ok(receipt)
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
