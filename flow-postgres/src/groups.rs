//! Grouped functions (`batch_events`, `debounce`; flow_core::grouping): the events
//! of a send join their key's open group, or open new ones, inside the send's
//! transaction, after the send statement stored them.

use sqlx::{PgConnection, Row};
use uuid::Uuid;

use flow_core::grouping::GroupKey;
use flow_core::{Error, EventId, Now, RunId, StoredEvent};

use crate::db_error;

/// One event of a send that joins a group of one function.
#[derive(Clone)]
pub(crate) struct Joining {
    pub event: Uuid,
    pub function: String,
    pub position: usize,
    pub group: GroupKey,
}

/// The advisory lock key of a group (taken with the send's other keys).
pub(crate) fn lock_key(function: &str, key: &str) -> String {
    format!("group\u{1f}{function}\u{1f}{key}")
}

/// Joins each event to its key's open group, or opens groups for them, and
/// returns (event, function, run) for the receipt. The caller holds the keys'
/// locks, so the groups read are the latest.
pub(crate) async fn join(
    conn: &mut PgConnection,
    joining: &[Joining],
    now: Now,
) -> Result<Vec<crate::send::StartedRun>, Error> {
    if joining.is_empty() {
        return Ok(Vec::new());
    }
    let ms = |v: Option<u64>| v.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX));
    let rows = sqlx::query(JOIN)
        .bind(joining.iter().map(|j| j.event).collect::<Vec<_>>())
        .bind(
            joining
                .iter()
                .map(|j| j.function.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            joining
                .iter()
                .map(|j| j.group.key.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            joining
                .iter()
                .map(|j| i32::try_from(j.position).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(
            joining
                .iter()
                .map(|j| i32::try_from(j.group.rule.max_size).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(
            joining
                .iter()
                .map(|j| ms(j.group.rule.period_ms))
                .collect::<Vec<_>>(),
        )
        .bind(
            joining
                .iter()
                .map(|j| ms(j.group.rule.timeout_ms))
                .collect::<Vec<_>>(),
        )
        .bind(joining.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
        .bind(now.at())
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    crate::send::run_triples(&rows)
}

/// The statement that places a send's grouped events (`$1`..`$8`, one row per
/// event and function, with a fresh run id each) at `$9`.
///
/// Per key, the send's events fill the open group first (a batch up to
/// `max_size`), then new groups of `max_size`, each run by the fresh id of its
/// first event. A group that is full is due at once; a batch is otherwise due
/// `timeout` after it opened, a debounce `period` after its last event but no
/// later than `timeout` after its first. One NOTIFY when a run was created or
/// moved, so idle workers look at their next due time again.
const JOIN: &str = "
WITH clock AS (
    SELECT COALESCE($9::timestamptz, now()) AS now
), input AS (
    SELECT u.*, row_number() OVER (PARTITION BY u.function_id, u.key ORDER BY u.position) AS nth
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::int[], $6::bigint[],
                $7::bigint[], $8::uuid[])
         AS u(event_id, function_id, key, position, max_size, period_ms, timeout_ms, fresh)
), open AS (
    -- Locked: a claim cannot lease the run until this send commits, and a run
    -- a claim leased first is no longer queued, so it is not open.
    SELECT g.function_id, g.key, g.run_id, g.size, g.opened_at, r.not_before
    FROM flow.event_groups g
    JOIN flow.runs r ON r.id = g.run_id
    WHERE (g.function_id, g.key) IN (SELECT function_id, key FROM input)
      AND r.status = 'queued' AND r.not_before > (SELECT now FROM clock)
    FOR UPDATE OF r
), placed AS (
    SELECT i.*, o.run_id AS open_run, o.opened_at, o.not_before AS open_due,
           COALESCE(o.size, 0) AS base,
           (COALESCE(o.size, 0) + i.nth - 1) / i.max_size AS g
    FROM input i LEFT JOIN open o ON o.function_id = i.function_id AND o.key = i.key
), members AS (
    SELECT p.*,
           CASE WHEN p.g = 0 AND p.open_run IS NOT NULL THEN p.open_run
                ELSE first_value(p.fresh) OVER w END AS run_id,
           CASE WHEN p.g = 0 THEN p.base ELSE 0 END + row_number() OVER w AS slot,
           CASE WHEN p.g = 0 THEN p.base ELSE 0 END
               + count(*) OVER (PARTITION BY p.function_id, p.key, p.g) AS size,
           p.g = 0 AND p.open_run IS NOT NULL AS existing
    FROM placed p
    WINDOW w AS (PARTITION BY p.function_id, p.key, p.g ORDER BY p.nth)
), groups AS (
    SELECT DISTINCT ON (m.function_id, m.key, m.g)
           m.function_id, m.key, m.g, m.run_id, m.event_id AS first_event, m.existing,
           m.size, m.open_due,
           CASE WHEN m.existing THEN m.opened_at ELSE c.now END AS opened_at,
           CASE WHEN m.size >= m.max_size THEN c.now
                WHEN m.period_ms IS NULL AND m.existing THEN m.open_due
                WHEN m.period_ms IS NULL THEN c.now + m.timeout_ms * interval '1 millisecond'
                -- LEAST passes over the NULL of a debounce without a timeout.
                ELSE LEAST(c.now + m.period_ms * interval '1 millisecond',
                           CASE WHEN m.existing THEN m.opened_at ELSE c.now END
                               + m.timeout_ms * interval '1 millisecond')
           END AS due
    FROM members m, clock c
    ORDER BY m.function_id, m.key, m.g, m.nth
), created AS (
    INSERT INTO flow.runs (id, function_id, event_id, status, not_before, created_at)
    SELECT g.run_id, g.function_id, g.first_event, 'queued', g.due, c.now
    FROM groups g, clock c
    WHERE NOT g.existing
    RETURNING id
), moved AS (
    -- A start deadline (timeouts) counts from when the run is due, so it moves too.
    UPDATE flow.runs r
    SET not_before = g.due, timeout_at = r.timeout_at + (g.due - r.not_before)
    FROM groups g
    WHERE g.existing AND r.id = g.run_id AND r.not_before <> g.due
    RETURNING r.id
), attached AS (
    INSERT INTO flow.run_events (run_id, position, event_id)
    SELECT run_id, slot, event_id FROM members
), latest AS (
    -- Each key's last group is the one the next event may join.
    INSERT INTO flow.event_groups AS e (function_id, key, run_id, size, opened_at)
    SELECT DISTINCT ON (function_id, key) function_id, key, run_id, size, opened_at
    FROM groups
    ORDER BY function_id, key, g DESC
    ON CONFLICT (function_id, key) DO UPDATE
        SET run_id = EXCLUDED.run_id, size = EXCLUDED.size, opened_at = EXCLUDED.opened_at
), notified AS (
    SELECT pg_notify('flow_wakeup', '')
    WHERE EXISTS (SELECT 1 FROM created) OR EXISTS (SELECT 1 FROM moved)
)
SELECT m.event_id, m.function_id, m.run_id AS id, (SELECT count(*) FROM notified) AS notified
FROM members m
ORDER BY m.position, m.function_id";

/// The events of a grouped run, in the order they joined it.
pub(crate) async fn events_of(
    conn: &mut PgConnection,
    run: RunId,
) -> Result<Vec<StoredEvent>, Error> {
    let rows = sqlx::query(
        "SELECT e.id, e.name, e.data, e.ts FROM flow.run_events re
         JOIN flow.events e ON e.id = re.event_id
         WHERE re.run_id = $1 ORDER BY re.position",
    )
    .bind(run.0)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    rows.iter()
        .map(|row| {
            Ok(StoredEvent {
                id: EventId(row.try_get("id").map_err(db_error)?),
                name: row.try_get("name").map_err(db_error)?,
                data: row.try_get("data").map_err(db_error)?,
                ts: row.try_get("ts").map_err(db_error)?,
            })
        })
        .collect()
}
