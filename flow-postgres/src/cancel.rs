//! Cancelling runs: by the client (one run, or a function's runs in a time
//! range) and by events (`cancel_on`, migration 9). Every way shares one
//! statement fragment, so a cancelled run is announced to its watchers whichever
//! way it was cancelled.

/// The CTEs that cancel the runs `$selector` picks (a SQL condition on `r`, with
/// `$from` joined: `", hits h"`) with the reason `$reason` (an expression):
/// those that have not ended are cancelled and announced to their watchers as
/// every finish is (`announce_finishes_sql!`), and a run that held active keys
/// (`run_concurrency`) wakes the workers whose runs wait for them. `clock(now)`
/// must be defined; defines `cancelled(id, held)`, `unwatched`, `announced` and
/// `freed`, the last two of which the statement must read for their NOTIFYs to
/// run (a CTE nothing reads is not).
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
            " AND r.status NOT IN ('completed', 'failed', 'cancelled', 'skipped')
                 RETURNING r.id, r.active_keys IS NOT NULL AS held
             ), freed AS (
                 SELECT pg_notify('flow_wakeup', '')
                 WHERE EXISTS (SELECT 1 FROM cancelled WHERE held)
             ), ",
            crate::finish::announce_finishes_sql!("SELECT id FROM cancelled")
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
             SELECT (SELECT count(*) FROM cancelled),
                    (SELECT count(*) FROM announced) + 0 * (SELECT count(*) FROM freed)"
        )
    };
}

pub(crate) use cancel_sql;
