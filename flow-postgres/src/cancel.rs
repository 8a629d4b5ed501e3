//! Cancelling runs: by the client (one run, or a function's runs in a time
//! range) and by events (`cancel_on`, migration 9). Every way shares one
//! statement fragment, so a cancelled run is announced to its watchers whichever
//! way it was cancelled.

/// The CTEs that cancel the runs `$selector` picks (a SQL condition on `r`, with
/// `$from` joined: `", hits h"`) with the reason `$reason` (an expression):
/// those that have not ended are cancelled, their watcher rows deleted and
/// `flow_finished` NOTIFYed with their ids (200 a notification). `clock(now)`
/// must be defined; defines `cancelled(id)`, `unwatched` and `announced`, which
/// the statement must read for the NOTIFY to run (a CTE nothing reads is not).
macro_rules! cancelling_sql {
    ($from:literal, $selector:literal, $reason:literal) => {
        concat!(
            "cancelled AS (
                 UPDATE flow.runs r
                 SET status = 'cancelled', error = ",
            $reason,
            ", error_kind = NULL, error_step = NULL,
                     finished_at = clock.now, lease_owner = NULL, lease_expires_at = NULL
                 FROM clock",
            $from,
            "
                 WHERE ",
            $selector,
            " AND r.status NOT IN ('completed', 'failed', 'cancelled')
                 RETURNING r.id
             ), unwatched AS (
                 DELETE FROM flow.run_watchers w
                 WHERE w.run_id IN (SELECT id FROM cancelled)
                 RETURNING w.run_id
             ), announced AS (
                 SELECT pg_notify('flow_finished', string_agg(run_id::text, ','))
                 FROM (SELECT run_id, (row_number() OVER ()) / 200 AS chunk
                       FROM (SELECT DISTINCT run_id FROM unwatched) AS d) AS c
                 GROUP BY chunk
             )"
        )
    };
}

pub(crate) use cancelling_sql;

/// A cancel statement: `cancelling_sql!` with these arguments, where `$1` is the
/// clock. It answers (cancelled, notifications).
macro_rules! cancel_sql {
    ($from:literal, $selector:literal, $reason:literal) => {
        concat!(
            "WITH clock AS (
                 SELECT COALESCE($1::timestamptz, now()) AS now
             ), ",
            crate::cancel::cancelling_sql!($from, $selector, $reason),
            "
             SELECT (SELECT count(*) FROM cancelled), (SELECT count(*) FROM announced)"
        )
    };
}

pub(crate) use cancel_sql;
