//! Resolving waits for events when events are sent (migration 6 explains the
//! tables). A send resolves, in its own statement, the waits it can see; a wait
//! registered by a park that committed after the send's statement began, and
//! before the send reached the wait's key, is seen through the key row's count
//! and resolved by a second statement ([`resolve_raced`]).

use sqlx::PgConnection;

use flow_core::{Error, Now};

use crate::db_error;

/// The statement tail that resolves the waits `found(run_id, key, position,
/// token, event_id)` names with their events, read from `$events` (`ev` inside
/// the send, whose rows the rest of its statement cannot read from the table):
/// for each run still waiting under the wait's lease token, it records the event
/// as the wait step's output, wakes the run (due at once) and closes the wait.
/// `clock(now)` must be defined. Defines `woken(id)`.
macro_rules! resolve_sql {
    ($events:literal) => {
        concat!(
            "), locked AS (
                 -- The latest version of each row (a park may have committed after
                 -- this statement began), locked in id order.
                 SELECT r.id, r.lease_token, r.status FROM flow.runs r
                 WHERE r.id IN (SELECT run_id FROM found)
                 ORDER BY r.id
                 FOR UPDATE
             ), recorded AS (
                 INSERT INTO flow.steps
                     (run_id, key, position, kind, output, error, attempts, started_at,
                      finished_at)
                 SELECT f.run_id, f.key, f.position, 'wait',
                        jsonb_build_object('id', e.id, 'name', e.name, 'data', e.data,
                                           'ts', e.ts),
                        NULL::jsonb, 1, clock.now, clock.now
                 FROM found f
                 JOIN locked l ON l.id = f.run_id AND l.lease_token = f.token
                                  AND l.status = 'waiting'
                 JOIN ",
            $events,
            " e ON e.id = f.event_id, clock
                 ON CONFLICT (run_id, key) DO NOTHING
                 RETURNING run_id, key
             ), woken AS (
                 UPDATE flow.runs r
                 SET status = 'queued', not_before = clock.now, wait_since = clock.now,
                     step_count = r.step_count + x.n
                 FROM (SELECT run_id, count(*) AS n FROM recorded GROUP BY run_id) x, clock
                 WHERE r.id = x.run_id
                 RETURNING r.id
             ), unwaited AS (
                 DELETE FROM flow.waits x USING recorded d
                 WHERE x.run_id = d.run_id AND x.key = d.key
             "
        )
    };
}

pub(crate) use resolve_sql;

/// Resolves the open waits on these keys (name, field, value) with each key's
/// latest event, when it came after the wait began and the run has not received
/// it before, and cancels the runs whose cancel waits (`cancel_on`) it matches;
/// returns how many runs it woke. Run after a send whose statement found waits
/// registered on its keys that it could not see.
pub(crate) async fn resolve_raced(
    conn: &mut PgConnection,
    names: &[String],
    fields: &[String],
    values: &[String],
    now: Now,
) -> Result<u64, Error> {
    let woken: i64 = sqlx::query_scalar(concat!(
        "WITH clock AS (
             SELECT COALESCE($4::timestamptz, now()) AS now
         ), raced AS (
             SELECT k.* FROM unnest($1::text[], $2::text[], $3::text[]) AS u(name, field, value)
             JOIN flow.wait_keys k
                 ON k.name = u.name AND k.field = u.field AND k.value = u.value
         ), cancel_hits AS (
             SELECT DISTINCT ON (x.run_id) x.run_id,
                    flow.cancel_on_reason(k.name, k.event_id, k.field) AS reason
             FROM raced k
             JOIN flow.cancel_waits x
                 ON x.name = k.name AND x.field = k.field AND x.value = k.value
             WHERE k.event_at > x.since AND k.event_id <> x.event_id
             ORDER BY x.run_id
         ), found AS (
             SELECT DISTINCT ON (x.run_id, x.key) x.run_id, x.key, x.position, x.token,
                    k.event_id
             FROM raced k
             JOIN flow.waits x
                 ON x.name = k.name AND x.field = k.field AND x.value = k.value
             WHERE k.event_at > x.since
               AND x.run_id NOT IN (SELECT run_id FROM cancel_hits)
               AND NOT EXISTS (SELECT 1 FROM flow.steps p
                               WHERE p.run_id = x.run_id AND p.kind = 'wait'
                                 AND p.output->>'id' = k.event_id::text)
             ORDER BY x.run_id, x.key
         ",
        resolve_sql!("flow.events"),
        "), ",
        crate::cancel::cancelling_sql!(", cancel_hits h", "r.id = h.run_id", "h.reason"),
        ", notified AS (
             SELECT pg_notify('flow_wakeup', '') WHERE EXISTS (SELECT 1 FROM woken)
         )
         SELECT (SELECT count(*) FROM woken) + 0 * (SELECT count(*) FROM notified)
                + 0 * (SELECT count(*) FROM announced) + 0 * (SELECT count(*) FROM freed)"
    ))
    .bind(names)
    .bind(fields)
    .bind(values)
    .bind(now.at())
    .fetch_one(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(woken as u64)
}
