//! [`Store`] for PostgreSQL. Every write for a leased run is fenced: it matches
//! the run's id, its current lease token and status `running`, and a write that
//! matches nothing changes nothing (`Committed::LeaseLost`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::Value;
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{Connection, Row};
use uuid::Uuid;

use flow_core::flow_control::Limited;
use flow_core::store::{
    Checkpoints, ClaimRequest, ClaimedRun, Committed, Connect, Due, EVENT_TIME_MARGIN, EventPage,
    EventQuery, EventView, FinishWatch, FunctionInfo, Lease, NewSignal, Next, OpenWait, ReadStore,
    RunPage, RunQuery, RunSummary, SendReceipt, Settle, SignalReceipt, StepRecord, Store,
    Transition, Wakeup, Wakeups, stored_error_message,
};
use flow_core::{
    AttemptView, Error, EventId, LostLease, NewEvent, Now, RunId, RunView, StoredEvent, Timeouts,
};

use crate::cancel::cancel_sql;
use crate::held::on_conn;
use crate::invoke::{Invokes, starts_runs};
use crate::send::{new_event_ids, send_on, stored_receipt};
use crate::signals::parks_on_signals;
use crate::{PgStore, WAKEUP_CHANNEL, db_error};

/// The functions of the text array `$functions`, less the paused ones
/// (`Client::pause`), as an array read once per statement: what claims and an idle
/// worker's next due time look at.
macro_rules! unpaused_sql {
    ($functions:literal) => {
        concat!(
            "ARRAY(SELECT f FROM unnest(",
            $functions,
            "::text[]) AS f
                   WHERE NOT EXISTS (SELECT 1 FROM flow.functions p
                                     WHERE p.id = f AND p.paused_at IS NOT NULL))"
        )
    };
}

/// The claim's `claimed` and `claimed_events` (no `WITH`, no trailing comma): the
/// runs `$which` selects (a condition on `r`, with `$from` joined) leased to
/// `$owner` for `$lease` seconds, `$set` setting more columns.
macro_rules! claim_sql {
    ($owner:literal, $lease:literal, $set:literal, $from:literal, $which:literal) => {
        concat!(
            "claimed AS (
         UPDATE flow.runs r
         SET status = 'running', lease_owner = ",
            $owner,
            ", lease_token = r.lease_token + 1,
             lease_expires_at = clock.now + ",
            $lease,
            " * interval '1 second',
             started_at = COALESCE(r.started_at, clock.now),
             -- Started: the deadline to start by gives way to one to finish by.
             timeout_at = CASE WHEN r.started_at IS NULL THEN clock.now + r.finish_within
                               ELSE r.timeout_at END",
            $set,
            "
         FROM clock",
            $from,
            "
         WHERE ",
            $which,
            "
         RETURNING r.id, r.function_id, r.lease_token, r.lost_count, r.blocked_count,
                   r.step_count, r.event_id
     ), claimed_events AS (
         SELECT e.id, e.name, e.data, e.ts FROM flow.events e
         WHERE e.id = ANY(ARRAY(SELECT event_id FROM claimed))
     )"
        )
    };
}
pub(crate) use claim_sql;

/// The rows of the runs `claim_sql!` leased, with their events and, for a resumed
/// run, its checkpoints ([`claimed_run`] reads them).
macro_rules! claimed_rows_sql {
    () => {
        "SELECT 'claimed' AS what, c.id AS id, c.lease_token AS lease_token, NULL AS key,
                c.function_id AS function_id, c.lost_count AS lost_count,
                c.blocked_count AS blocked_count, c.step_count AS step_count,
                e.id AS event_id, e.name AS name, e.data AS data, e.ts AS ts,
                -- A resumed run's checkpoints, read as the load reads them,
                -- but in this statement's snapshot: records committed after
                -- it are missing, and the step count of the row's latest
                -- version (which every writer of another run's records
                -- raises with them) shows it (`claimed_checkpoints`).
                CASE WHEN c.lease_token > 1 THEN jsonb_build_object(
                    'steps', (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                                  'key', s.key, 'position', s.position,
                                  'kind', s.kind, 'output', s.output,
                                  'error', s.error, 'attempts', s.attempts,
                                  'started_at', s.started_at,
                                  'finished_at', s.finished_at,
                                  'wake_at', s.wake_at)), '[]')
                              FROM flow.steps s WHERE s.run_id = c.id),
                    'failed', (SELECT COALESCE(jsonb_agg(jsonb_build_array(a.key, a.n)),
                                               '[]')
                               FROM (SELECT key, max(attempt) AS n FROM flow.attempts
                                     WHERE run_id = c.id GROUP BY key) a),
                    'waits', (SELECT COALESCE(jsonb_agg(jsonb_build_array(
                                                  w.key, w.expires_at)), '[]')
                              FROM flow.waits w WHERE w.run_id = c.id)) END AS checkpoints
         FROM claimed c JOIN claimed_events e ON e.id = c.event_id"
    };
}
pub(crate) use claimed_rows_sql;

pub(crate) use unpaused_sql;

/// A lease length as the seconds that the queries multiply `interval '1 second'` by.
fn seconds(lease: Duration) -> f64 {
    lease.as_secs_f64()
}

impl Store for PgStore {
    fn describe(&self) -> String {
        self.described.to_string()
    }

    async fn register_functions(&self, functions: &[FunctionInfo], now: Now) -> Result<(), Error> {
        let ids: Vec<&str> = functions.iter().map(|f| f.id.as_str()).collect();
        let triggers: Vec<&str> = functions.iter().map(|f| f.trigger.as_str()).collect();
        let failures_of: Vec<Option<&str>> =
            functions.iter().map(|f| f.failures_of.as_deref()).collect();
        let seconds_of = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        let start_timeouts: Vec<Option<f64>> = functions
            .iter()
            .map(|f| seconds_of(f.timeouts.start))
            .collect();
        let finish_timeouts: Vec<Option<f64>> = functions
            .iter()
            .map(|f| seconds_of(f.timeouts.finish))
            .collect();
        let cancels = functions
            .iter()
            .flat_map(|f| f.cancel_on.iter().map(move |c| (f.id.as_str(), c)));
        let (mut cancel_fns, mut cancel_names, mut cancel_fields) = (vec![], vec![], vec![]);
        for (function, cancel) in cancels {
            cancel_fns.push(function);
            cancel_names.push(cancel.event);
            cancel_fields.push(cancel.field);
        }
        let (mut trigger_fns, mut trigger_names) = (vec![], vec![]);
        for f in functions {
            for trigger in std::iter::once(&f.trigger).chain(&f.more_triggers) {
                trigger_fns.push(f.id.as_str());
                trigger_names.push(trigger.as_str());
            }
        }
        // A worker that announces a function may be a new deploy whose code
        // replays the function's blocked runs: they are tried again at once.
        // Its cancel triggers replace those announced before, and their fields
        // are awaited, so that sends key their events (migration 9). Its versions
        // are seen in the same transaction, so a new function is never in the
        // catalog without its rules.
        on_conn!(self, repeat = true, |conn| async {
            let mut tx = conn.begin().await.map_err(db_error)?;
            sqlx::query(
                "WITH clock AS (
                     SELECT COALESCE($3::timestamptz, now()) AS now
                 ), announced AS (
                     INSERT INTO flow.functions
                         (id, trigger, failures_of, start_timeout, finish_timeout, last_seen)
                     SELECT f.id, f.trigger, f.failures_of, f.start * interval '1 second',
                            f.finish * interval '1 second', clock.now
                     FROM unnest($1::text[], $2::text[], $4::text[], $8::float8[], $9::float8[])
                         AS f(id, trigger, failures_of, start, finish), clock
                     ON CONFLICT (id) DO UPDATE
                         SET trigger = EXCLUDED.trigger, failures_of = EXCLUDED.failures_of,
                             start_timeout = EXCLUDED.start_timeout,
                             finish_timeout = EXCLUDED.finish_timeout,
                             last_seen = EXCLUDED.last_seen
                 ), all_triggers AS (
                     SELECT * FROM unnest($10::text[], $11::text[]) AS t(function_id, trigger)
                 ), triggers_dropped AS (
                     DELETE FROM flow.function_triggers t
                     WHERE t.function_id = ANY($1)
                       AND (t.function_id, t.trigger) NOT IN (SELECT * FROM all_triggers)
                 ), triggers_added AS (
                     INSERT INTO flow.function_triggers (trigger, function_id)
                     SELECT trigger, function_id FROM all_triggers
                     ON CONFLICT DO NOTHING
                 ), cancels AS (
                     SELECT * FROM unnest($5::text[], $6::text[], $7::text[])
                         AS c(function_id, name, field)
                 ), dropped AS (
                     DELETE FROM flow.cancel_triggers t
                     WHERE t.function_id = ANY($1)
                       AND (t.function_id, t.name, t.field) NOT IN (SELECT * FROM cancels)
                 ), added AS (
                     INSERT INTO flow.cancel_triggers (function_id, name, field)
                     SELECT * FROM cancels
                     ON CONFLICT DO NOTHING
                 ), awaited AS (
                     INSERT INTO flow.awaited_fields (name, field, added_at)
                     SELECT DISTINCT c.name, c.field, clock.now FROM cancels c, clock
                     ON CONFLICT DO NOTHING
                 ), unblocked AS (
                     UPDATE flow.runs r SET not_before = clock.now
                     FROM clock
                     WHERE r.status = 'blocked' AND r.function_id = ANY($1) AND r.not_before > clock.now
                     RETURNING 1
                 )
                 SELECT pg_notify('flow_wakeup', '') FROM (SELECT 1 FROM unblocked LIMIT 1) AS any_run",
            )
            .bind(&ids)
            .bind(&triggers)
            .bind(now.at())
            .bind(&failures_of)
            .bind(&cancel_fns)
            .bind(&cancel_names)
            .bind(&cancel_fields)
            .bind(&start_timeouts)
            .bind(&finish_timeouts)
            .bind(&trigger_fns)
            .bind(&trigger_names)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            crate::versions::keep(&mut tx, functions, now, true).await?;
            tx.commit().await.map_err(db_error)
        })?;
        Ok(())
    }

    async fn keep_announced(&self, functions: &[FunctionInfo], now: Now) -> Result<(), Error> {
        on_conn!(self, repeat = true, |conn| {
            crate::versions::keep(conn, functions, now, false)
        })
    }

    async fn latest_event(&self, name: &str) -> Result<Option<DateTime<Utc>>, Error> {
        // Through `events_by_name` (migration 6).
        on_conn!(self, repeat = true, |conn| async {
            sqlx::query_scalar(
                "SELECT ts FROM flow.events WHERE name = $1 ORDER BY received_at DESC LIMIT 1",
            )
            .bind(name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)
        })
    }

    async fn send(&self, events: Vec<NewEvent>, now: Now) -> Result<SendReceipt, Error> {
        let ids = new_event_ids(events.len());
        let dedupes = events.iter().any(|e| e.producer_id().is_some());
        // Safe to repeat: a try after a transient failure first looks for its
        // events, which the first try may have committed before its answer was lost.
        let (events, ids) = (&events, &ids);
        let mut tried = false;
        on_conn!(self, repeat = true, |conn| {
            let again = std::mem::replace(&mut tried, true);
            async move {
                if again && let Some(receipt) = stored_receipt(conn, events, ids).await? {
                    return Ok(receipt);
                }
                if dedupes {
                    // The dedupe claim and the events commit together.
                    let mut tx = conn.begin().await.map_err(db_error)?;
                    let receipt = send_on(&mut tx, events, ids, now, &self.catalog).await?;
                    tx.commit().await.map_err(db_error)?;
                    Ok(receipt)
                } else {
                    // One statement, atomic on its own.
                    send_on(conn, events, ids, now, &self.catalog).await
                }
            }
        })
    }

    async fn signal(&self, signal: NewSignal, now: Now) -> Result<Option<SignalReceipt>, Error> {
        // Not repeated after a transient failure: a commit whose answer was lost
        // may have delivered it, and a second try would find no waiter or buffer
        // it twice. The caller sees the failure and decides.
        let signal = &signal;
        on_conn!(self, repeat = false, |conn| async move {
            let mut tx = conn.begin().await.map_err(db_error)?;
            let receipt = crate::signals::send(&mut tx, signal, now).await?;
            tx.commit().await.map_err(db_error)?;
            Ok(receipt)
        })
    }

    async fn set_paused(&self, function: &str, paused: bool, now: Now) -> Result<bool, Error> {
        on_conn!(self, repeat = true, |conn| async {
            // A resume tells idle workers, whose next due time left these runs out.
            sqlx::query_scalar(
                "WITH changed AS (
                     UPDATE flow.functions
                     SET paused_at = CASE WHEN $2 THEN COALESCE(paused_at,
                                                                COALESCE($3::timestamptz, now()))
                                     END
                     WHERE id = $1
                     RETURNING id
                 ), notified AS (
                     SELECT pg_notify('flow_wakeup', '')
                     WHERE NOT $2 AND EXISTS (SELECT 1 FROM changed)
                 )
                 SELECT EXISTS (SELECT 1 FROM changed) AND (SELECT count(*) FROM notified) >= 0",
            )
            .bind(function)
            .bind(paused)
            .bind(now.at())
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)
        })
    }

    async fn claim(&self, request: ClaimRequest<'_>, now: Now) -> Result<Vec<ClaimedRun>, Error> {
        // The commit statement with no transitions is the claim alone.
        let lease = request.lease;
        Ok(self
            .commit_claiming(&[], Some(request), lease, now)
            .await?
            .1)
    }

    async fn group_events(&self, run: RunId) -> Result<Vec<StoredEvent>, Error> {
        on_conn!(self, repeat = true, |conn| crate::groups::events_of(
            conn, run
        ))
    }

    async fn load(&self, run: RunId) -> Result<Checkpoints, Error> {
        let rows = on_conn!(self, repeat = true, |conn| async {
            sqlx::query(
                "SELECT key, position, kind, output, error, attempts, started_at, finished_at, wake_at,
                        NULL::integer AS failed
                 FROM flow.steps WHERE run_id = $1
                 UNION ALL
                 SELECT key, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, max(attempt)
                 FROM flow.attempts WHERE run_id = $1 GROUP BY key
                 UNION ALL
                 SELECT key, NULL, 'open wait', NULL, NULL, NULL, NULL, NULL, expires_at, NULL
                 FROM flow.waits WHERE run_id = $1",
        )
        .bind(run.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)
        })?;
        let mut checkpoints = Checkpoints::default();
        for row in rows {
            match col::<Option<i32>>(&row, "failed")? {
                Some(failed) => checkpoints
                    .failed_attempts
                    .push((col(&row, "key")?, failed as u32)),
                None if col::<Option<&str>>(&row, "kind")? == Some("open wait") => {
                    checkpoints.waits.push(OpenWait {
                        key: col(&row, "key")?,
                        expires_at: col(&row, "wake_at")?,
                    })
                }
                None => checkpoints.steps.push(step_record(&row)?),
            }
        }
        Ok(checkpoints)
    }

    async fn commit(
        &self,
        batch: &[(Lease, Transition)],
        lease_for: Duration,
        now: Now,
    ) -> Result<Vec<Committed>, Error> {
        Ok(self.commit_claiming(batch, None, lease_for, now).await?.0)
    }

    async fn commit_and_claim(
        &self,
        batch: &[(Lease, Transition)],
        claim: ClaimRequest<'_>,
        lease_for: Duration,
        now: Now,
    ) -> Result<(Vec<Committed>, Vec<ClaimedRun>), Error> {
        self.commit_claiming(batch, Some(claim), lease_for, now)
            .await
    }

    async fn renew(
        &self,
        leases: &[Lease],
        lease_for: Duration,
        now: Now,
    ) -> Result<Vec<RunId>, Error> {
        let ids: Vec<Uuid> = leases.iter().map(|l| l.run_id.0).collect();
        let tokens: Vec<i64> = leases.iter().map(|l| l.token).collect();
        let rows = on_conn!(self, repeat = true, |conn| async {
            sqlx::query(
                "UPDATE flow.runs r
                 SET lease_expires_at = COALESCE($4::timestamptz, now()) + $3 * interval '1 second'
                 FROM unnest($1::uuid[], $2::bigint[]) AS l(id, token)
                 WHERE r.id = l.id AND r.lease_token = l.token AND r.status = 'running'
                   AND r.lease_expires_at > COALESCE($4::timestamptz, now())
                 RETURNING r.id",
            )
            .bind(&ids)
            .bind(&tokens)
            .bind(seconds(lease_for))
            .bind(now.at())
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)
        })?;
        rows.iter()
            .map(|r| Ok(RunId(r.try_get(0).map_err(db_error)?)))
            .collect()
    }

    async fn recover_expired(&self, max_lost: u32, now: Now) -> Result<u64, Error> {
        let rows = on_conn!(self, repeat = true, |conn| async {
            sqlx::query(
                "WITH clock AS (
                     SELECT COALESCE($1::timestamptz, now()) AS now
                 ), expired AS (
                     SELECT id FROM flow.runs
                     WHERE status = 'running' AND lease_expires_at < (SELECT now FROM clock)
                     FOR UPDATE SKIP LOCKED
                 )
                 UPDATE flow.runs r
                 SET lost_count = r.lost_count + 1,
                     lost_by = r.lease_owner, lost_at = clock.now, lost_step = r.current_step,
                     lost_after = (SELECT s.key FROM flow.steps s WHERE s.run_id = r.id
                                   ORDER BY s.position DESC LIMIT 1),
                     status = CASE WHEN r.lost_count + 1 >= $2 THEN 'failed' ELSE 'queued' END,
                     error_kind = CASE WHEN r.lost_count + 1 >= $2 THEN 'lost' END,
                     error_step = CASE WHEN r.lost_count + 1 >= $2 THEN r.current_step END,
                     error = CASE WHEN r.lost_count + 1 >= $2 THEN
                         format('its worker was lost %s times in a row without a new checkpoint, '
                                'the last time in %s; a step that kills its worker is not retried forever',
                                r.lost_count + 1,
                                COALESCE('step `' || r.current_step || '`', 'the code before its next step'))
                         END,
                     finished_at = CASE WHEN r.lost_count + 1 >= $2 THEN clock.now END,
                     not_before = clock.now, lease_owner = NULL, lease_expires_at = NULL
                 FROM expired, clock
                 WHERE r.id = expired.id
                 RETURNING r.status",
        )
        .bind(now.at())
        .bind(max_lost as i32)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)
        })?;
        if rows
            .iter()
            .any(|r| r.try_get::<&str, _>(0).is_ok_and(|s| s == "queued"))
        {
            self.notify().await?;
        }
        Ok(rows.len() as u64)
    }

    async fn cancel_timed_out(&self, now: Now) -> Result<u64, Error> {
        // The reasons are written by flow-core (`Timeouts::reason`): the runs are
        // read first, and cancelled by a statement that checks their deadline
        // again (a run that started meanwhile has a new one).
        let rows = on_conn!(self, repeat = true, |conn| async {
            sqlx::query(
                "SELECT id, started_at IS NOT NULL AS started,
                        extract(epoch FROM CASE WHEN started_at IS NULL
                                                THEN timeout_at - created_at
                                                ELSE finish_within END)::float8 AS within
                 FROM flow.runs
                 WHERE timeout_at <= COALESCE($1::timestamptz, now())
                   AND status NOT IN ('completed', 'failed', 'cancelled')
                 LIMIT 1000",
            )
            .bind(now.at())
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)
        })?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut reasons = Vec::with_capacity(rows.len());
        for row in &rows {
            ids.push(col::<Uuid>(row, "id")?);
            let within = Duration::from_secs_f64(col::<f64>(row, "within")?.max(0.0));
            reasons.push(Timeouts::reason(col(row, "started")?, within));
        }
        // Safe to repeat: a second try finds the runs ended and changes nothing.
        let (cancelled, _announced): (i64, i64) = on_conn!(self, repeat = true, |conn| async {
            sqlx::query_as(cancel_sql!(
                ", unnest($2::uuid[], $3::text[]) AS h(id, reason)",
                "r.id = h.id AND r.timeout_at <= clock.now",
                "h.reason"
            ))
            .bind(now.at())
            .bind(&ids)
            .bind(&reasons)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)
        })?;
        Ok(cancelled as u64)
    }

    async fn rerun(&self, run: RunId, now: Now) -> Result<RunId, Error> {
        // The new run's id is made once: a try repeated after its commit finds it.
        let fresh = Uuid::now_v7();
        let row = on_conn!(self, repeat = true, |conn| async {
            sqlx::query(
                "WITH clock AS (
                     SELECT COALESCE($3::timestamptz, now()) AS now
                 ), source AS (
                     SELECT function_id, event_id, status FROM flow.runs WHERE id = $1
                 ), fresh AS (
                     INSERT INTO flow.runs
                         (id, function_id, event_id, status, not_before, created_at)
                     SELECT $2, s.function_id, s.event_id, 'queued', clock.now, clock.now
                     FROM source s, clock
                     WHERE s.status IN ('completed', 'failed', 'cancelled', 'skipped')
                       AND EXISTS (SELECT 1 FROM flow.functions f WHERE f.id = s.function_id)
                     ON CONFLICT (id) DO NOTHING
                     RETURNING id
                 ), events AS (
                     -- A batch or debounce run's events, for the new run too.
                     INSERT INTO flow.run_events (run_id, position, event_id)
                     SELECT f.id, re.position, re.event_id
                     FROM fresh f JOIN flow.run_events re ON re.run_id = $1
                 ), notified AS (
                     SELECT pg_notify('flow_wakeup', '') FROM fresh
                 )
                 SELECT s.status, s.function_id,
                        EXISTS (SELECT 1 FROM flow.functions f WHERE f.id = s.function_id)
                            AS known,
                        EXISTS (SELECT 1 FROM fresh)
                            OR EXISTS (SELECT 1 FROM flow.runs WHERE id = $2) AS started,
                        (SELECT count(*) FROM notified) AS notified
                 FROM source s",
            )
            .bind(run.0)
            .bind(fresh)
            .bind(now.at())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)
        })?;
        let Some(row) = row else {
            return Err(Error::RunNotFound(run));
        };
        if col(&row, "started")? {
            return Ok(RunId(fresh));
        }
        let status: flow_core::RunStatus = col::<String>(&row, "status")?.parse()?;
        if !status.is_finished() {
            return Err(Error::NotEnded { run, status });
        }
        Err(Error::FunctionNotFound(col(&row, "function_id")?))
    }

    async fn cancel(&self, run: RunId, reason: &str, now: Now) -> Result<bool, Error> {
        // Safe to repeat: a second try finds the run ended and changes nothing.
        let (cancelled, _announced): (i64, i64) = on_conn!(self, repeat = true, |conn| async {
            sqlx::query_as(cancel_sql!("", "r.id = $3", "$2"))
                .bind(now.at())
                .bind(reason)
                .bind(run.0)
                .fetch_one(&mut *conn)
                .await
                .map_err(db_error)
        })?;
        Ok(cancelled == 1)
    }

    async fn cancel_runs(
        &self,
        function: &str,
        created: std::ops::Range<DateTime<Utc>>,
        reason: &str,
        now: Now,
    ) -> Result<u64, Error> {
        let (cancelled, _announced): (i64, i64) = on_conn!(self, repeat = true, |conn| async {
            sqlx::query_as(cancel_sql!(
                "",
                "r.function_id = $3 AND r.created_at >= $4 AND r.created_at < $5",
                "$2"
            ))
            .bind(now.at())
            .bind(reason)
            .bind(function)
            .bind(created.start)
            .bind(created.end)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)
        })?;
        Ok(cancelled as u64)
    }

    async fn settle_blocked(&self, run: RunId, settle: &Settle, now: Now) -> Result<bool, Error> {
        let settled = on_conn!(self, repeat = false, |conn| async {
            sqlx::query(
                "UPDATE flow.runs
                 SET status = $2, error = $3 || COALESCE(' (blocked by: ' || error || ')', ''),
                     error_kind = $4, finished_at = COALESCE($5::timestamptz, now())
                 WHERE id = $1 AND status = 'blocked'",
            )
            .bind(run.0)
            .bind(settle.status().as_str())
            .bind(settle.message())
            .bind(settle.kind().map(|k| k.as_str()))
            .bind(now.at())
            .execute(&mut *conn)
            .await
            .map_err(db_error)
        })?;
        Ok(settled.rows_affected() == 1)
    }

    async fn next_wakeup(
        &self,
        functions: &[String],
        limited: &Limited,
    ) -> Result<Option<DateTime<Utc>>, Error> {
        let table = limited.rule_table();
        let row = on_conn!(self, repeat = true, |conn| async {
            // `ORDER BY … LIMIT 1`, not `min()`: the planner aggregates a `min`
            // with a filter over every entry of the index (every sleeping and
            // waiting run: 35 ms at 20,000 of them), where the ordered scan stops
            // at the first row of these functions. A limited function's run whose
            // keys are full is left out: the run that frees the slot notifies.
            sqlx::query(concat!(
                "WITH ",
                crate::concurrency::limits_sql!("$3", "$4", "$5", "$6"),
                ", ",
                crate::concurrency::running_sql!("now()"),
                "
                 SELECT LEAST(
                 (SELECT not_before FROM flow.runs
                  WHERE status IN ('queued', 'sleeping', 'waiting', 'blocked')
                    AND function_id = ANY(",
                unpaused_sql!("$1"),
                ")
                  ORDER BY not_before LIMIT 1),
                 (SELECT r.not_before FROM flow.runs r
                  WHERE r.status IN ('queued', 'sleeping', 'waiting', 'blocked')
                    AND r.function_id = ANY(",
                unpaused_sql!("$2"),
                ")
                    AND (r.concurrency_keys IS NULL OR NOT ",
                crate::concurrency::full_sql!(),
                ")
                  ORDER BY r.not_before LIMIT 1),
                 (SELECT min(lease_expires_at) FROM flow.runs WHERE status = 'running'),
                 (SELECT min(timeout_at) FROM flow.runs
                  WHERE timeout_at IS NOT NULL
                    AND status NOT IN ('completed', 'failed', 'cancelled')))"
            ))
            .bind(functions)
            .bind(limited.ids())
            .bind(&table.functions)
            .bind(&table.positions)
            .bind(&table.limits)
            .bind(&table.active)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)
        })?;
        row.try_get(0).map_err(db_error)
    }

    async fn database_time(&self) -> Result<DateTime<Utc>, Error> {
        on_conn!(self, repeat = true, |conn| async {
            sqlx::query_scalar("SELECT now()")
                .fetch_one(&mut *conn)
                .await
                .map_err(db_error)
        })
    }

    async fn detached(&self) -> Result<Self, Error> {
        // A socket serves only the runtime it was opened on: the renewal thread's
        // connections are its own, opened when it first uses them. Its renewals and
        // clock readings take turns on one held connection; the pool is a spare.
        let options = (*self.pool.connect_options()).clone();
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(self.pool.options().get_acquire_timeout())
            .connect_lazy_with(options);
        Ok(PgStore::on(pool, self.described.clone()))
    }

    async fn wakeups(&self) -> Result<Wakeups, Error> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(db_error)?;
        listener.listen(WAKEUP_CHANNEL).await.map_err(db_error)?;
        let stream = listener.into_stream().take_while(|item| {
            let alive = item.is_ok();
            if let Err(e) = item {
                tracing::warn!(error = %e, "notification connection lost");
            }
            futures::future::ready(alive)
        });
        Ok(Box::pin(stream.map(|item| {
            // An empty payload means "now"; otherwise microseconds since the epoch.
            item.ok()
                .and_then(|n| n.payload().parse::<i64>().ok())
                .and_then(DateTime::from_timestamp_micros)
                .map_or(Wakeup::Now, Wakeup::At)
        })))
    }
}

impl ReadStore for PgStore {
    async fn run(&self, id: RunId) -> Result<Option<RunView>, Error> {
        // One snapshot: the run, its steps and its attempts as of one moment.
        on_conn!(self, repeat = true, |conn| read_run(conn, id))
    }

    async fn watch_finish(&self, run: RunId) -> Result<FinishWatch, Error> {
        self.watch(run).await
    }

    async fn events(&self, query: &EventQuery) -> Result<EventPage, Error> {
        let rows = on_conn!(self, repeat = true, |conn| async {
            sqlx::query(
                "SELECT id, name, data, producer_id, ts, received_at FROM flow.events
                 WHERE ($1::text IS NULL OR name = $1) AND ($2::uuid IS NULL OR id < $2)
                 ORDER BY id DESC
                 LIMIT $3",
            )
            .bind(query.name.as_deref())
            .bind(query.after.map(|e| e.0))
            .bind(i64::from(query.limit) + 1)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)
        })?;
        let events = rows
            .iter()
            .map(|row| {
                Ok(EventView {
                    id: EventId(col(row, "id")?),
                    name: col(row, "name")?,
                    data: col(row, "data")?,
                    producer_id: col(row, "producer_id")?,
                    ts: col(row, "ts")?,
                    received_at: col(row, "received_at")?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(EventPage::of(events, query.limit))
    }

    async fn runs(&self, query: &RunQuery) -> Result<RunPage, Error> {
        let statuses: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
        let rows = on_conn!(self, repeat = true, |conn| async {
            sqlx::query(
                "SELECT id, function_id, event_id, status, error, created_at, started_at,
                        finished_at
                 FROM flow.runs
                 WHERE ($1::text IS NULL OR function_id = $1)
                   AND (cardinality($2::text[]) = 0 OR status = ANY($2))
                   AND ($3::timestamptz IS NULL OR created_at >= $3)
                   AND ($4::timestamptz IS NULL OR created_at < $4)
                   AND ($5::uuid IS NULL OR event_id = $5
                        OR id IN (SELECT run_id FROM flow.run_events WHERE event_id = $5))
                   AND ($6::uuid IS NULL OR id < $6)
                 ORDER BY id DESC
                 LIMIT $7",
            )
            .bind(query.function.as_deref())
            .bind(&statuses)
            .bind(query.created_from)
            .bind(query.created_to)
            .bind(query.event.map(|e| e.0))
            .bind(query.after.map(|r| r.0))
            .bind(i64::from(query.limit) + 1)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)
        })?;
        let runs = rows
            .iter()
            .map(|row| {
                Ok(RunSummary {
                    id: RunId(col(row, "id")?),
                    function_id: col(row, "function_id")?,
                    event_id: EventId(col(row, "event_id")?),
                    status: col::<String>(row, "status")?.parse()?,
                    error: col(row, "error")?,
                    created_at: col(row, "created_at")?,
                    started_at: col(row, "started_at")?,
                    finished_at: col(row, "finished_at")?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(RunPage::of(runs, query.limit))
    }

    async fn functions(&self) -> Result<Vec<flow_core::FunctionView>, Error> {
        let rows = on_conn!(self, repeat = true, |conn| async {
            sqlx::query(
                "SELECT f.id, f.trigger, f.last_seen, f.paused_at, f.send_rules,
                        ARRAY(SELECT t.trigger FROM flow.function_triggers t
                              WHERE t.function_id = f.id AND t.trigger <> f.trigger
                              ORDER BY t.trigger) AS more_triggers
                 FROM flow.functions f ORDER BY f.id",
            )
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)
        })?;
        rows.iter()
            .map(|row| {
                let trigger: String = col(row, "trigger")?;
                let more: Vec<String> = col(row, "more_triggers")?;
                Ok(flow_core::FunctionView {
                    id: col(row, "id")?,
                    triggers: std::iter::once(trigger.clone()).chain(more).collect(),
                    trigger,
                    send_rules: col(row, "send_rules")?,
                    last_seen: col(row, "last_seen")?,
                    paused_at: col(row, "paused_at")?,
                })
            })
            .collect()
    }
}

/// A run's view, read in one read-only snapshot.
async fn read_run(conn: &mut sqlx::PgConnection, id: RunId) -> Result<Option<RunView>, Error> {
    let mut tx = conn
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(db_error)?;
    let Some(row) = sqlx::query(
        "SELECT id, function_id, event_id, status, output, error, error_kind, error_step,
                created_at, started_at, finished_at, lost_by, lost_at, lost_step, lost_after
         FROM flow.runs WHERE id = $1",
    )
    .bind(id.0)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?
    else {
        return Ok(None);
    };
    let steps = sqlx::query(
        "SELECT key, position, kind, output, error, attempts, started_at, finished_at, wake_at
         FROM flow.steps WHERE run_id = $1 ORDER BY position",
    )
    .bind(id.0)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?
    .iter()
    .map(|row| step_record(row).map(StepRecord::into_view))
    .collect::<Result<Vec<_>, _>>()?;
    let failures: Vec<AttemptView> = sqlx::query(
        "SELECT key, attempt, error, retry_at FROM flow.attempts WHERE run_id = $1
         ORDER BY finished_at, key, attempt",
    )
    .bind(id.0)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?
    .iter()
    .map(|row| {
        Ok(AttemptView {
            step: col(row, "key")?,
            attempt: col::<i32>(row, "attempt")? as u32,
            error: stored_error_message(&col::<Value>(row, "error")?),
            retry_at: col(row, "retry_at")?,
        })
    })
    .collect::<Result<_, Error>>()?;
    Ok(Some(RunView {
        id: RunId(col(&row, "id")?),
        function_id: col(&row, "function_id")?,
        event_id: EventId(col(&row, "event_id")?),
        status: col::<&str>(&row, "status")?.parse()?,
        output: col(&row, "output")?,
        error: col(&row, "error")?,
        failure_kind: col::<Option<&str>>(&row, "error_kind")?
            .map(str::parse)
            .transpose()?,
        failure_step: col(&row, "error_step")?,
        last_lost: match col::<Option<String>>(&row, "lost_by")? {
            Some(worker) => Some(LostLease {
                worker,
                at: col(&row, "lost_at")?,
                step: col(&row, "lost_step")?,
                after_step: col(&row, "lost_after")?,
            }),
            None => None,
        },
        created_at: col(&row, "created_at")?,
        started_at: col(&row, "started_at")?,
        finished_at: col(&row, "finished_at")?,
        steps,
        handler_attempts: flow_core::store::handler_attempts(&failures),
        failures,
    }))
}

impl Connect for PgStore {
    async fn connect(url: &str) -> Result<Self, Error> {
        PgStore::connect(url).await
    }
}

impl PgStore {
    /// The commit statement: the run rows (fenced on id + token + `running`), the
    /// steps and failed attempts of the runs whose row was updated, the wake-up
    /// hints, and the claim if there is one, in one statement: a batch of many
    /// runs' transitions, and the runs that replace those that left, cost one
    /// commit. A key that is already recorded keeps its first record.
    async fn commit_claiming(
        &self,
        batch: &[(Lease, Transition)],
        claim: Option<ClaimRequest<'_>>,
        lease_for: Duration,
        now: Now,
    ) -> Result<(Vec<Committed>, Vec<ClaimedRun>), Error> {
        let input = CommitInput::of(batch);
        let no_functions: &[String] = &[];
        let (claim_functions, claim_max, claim_owner, claim_lease) = match &claim {
            Some(c) => (
                c.functions,
                i64::try_from(c.max).unwrap_or(i64::MAX),
                Some(&**c.owner),
                c.lease,
            ),
            None => (no_functions, 0, None, lease_for),
        };
        let payloads = wakeup_payloads(batch);
        let claim_args = ClaimArgs {
            functions: claim_functions,
            max: claim_max,
            owner: claim_owner,
            lease: seconds(claim_lease),
        };
        let sends = batch
            .iter()
            .any(|(_, t)| !t.events.is_empty() || starts_runs(t) || parks_on_signals(t));
        // A claim alone is safe to repeat; a batch is retried by the committer.
        let (rows, kept) = on_conn!(self, repeat = batch.is_empty(), |conn| async {
            let query = commit_query(&input, &payloads, &claim_args, lease_for, now);
            if !sends {
                let rows = query.fetch_all(&mut *conn).await.map_err(db_error)?;
                let kept = CommitRows::of(&rows)?;
                return Ok((rows, kept));
            }
            // Events, invoked runs and signal waits ride on their transition's
            // commit: stored in the same transaction, for the transitions the
            // statement kept whole. Signal names are locked before any run row.
            let mut tx = conn.begin().await.map_err(db_error)?;
            crate::signals::lock_names(&mut tx, batch).await?;
            let rows = query.fetch_all(&mut *tx).await.map_err(db_error)?;
            let kept = CommitRows::of(&rows)?;
            let mut events = Vec::new();
            let mut ids = Vec::new();
            let mut invokes = Invokes::default();
            for (lease, t) in batch {
                if kept.committed(lease, t) == Committed::Written {
                    for outgoing in &t.events {
                        events.push(outgoing.event.clone());
                        ids.push(outgoing.id);
                    }
                    invokes.add(lease, t);
                    crate::signals::register(&mut tx, lease, t, now).await?;
                }
            }
            if !events.is_empty() {
                send_on(&mut tx, &events, &ids, now, &self.catalog).await?;
            }
            invokes.start(&mut tx, now).await?;
            tx.commit().await.map_err(db_error)?;
            Ok((rows, kept))
        })?;
        let claimed_rows: Vec<&PgRow> = rows
            .iter()
            .filter(|row| row.try_get::<&str, _>("what").is_ok_and(|w| w == "claimed"))
            .collect();
        let mut claimed = match &claim {
            Some(claim) => self.claimed_runs(claimed_rows, claim.owner, now).await?,
            None => Vec::new(),
        };
        if let Some(claim) = &claim
            && !claim.limited.is_empty()
            && claimed.len() < claim.max
        {
            let more = claim.max - claimed.len();
            let (rows, problems) = on_conn!(self, repeat = true, |conn| {
                crate::concurrency::claim(conn, claim, more, now)
            })?;
            let mut limited = self
                .claimed_runs(rows.iter().collect(), claim.owner, now)
                .await?;
            for run in &mut limited {
                run.key_problem = problems.get(&run.lease.run_id.0).cloned();
            }
            claimed.extend(limited);
        }
        let committed = batch
            .iter()
            .map(|(lease, transition)| kept.committed(lease, transition))
            .collect();
        Ok((committed, claimed))
    }

    /// The runs a claim leased, from their rows; a row that does not decode fails
    /// its run (naming the column) instead of stopping the claim.
    async fn claimed_runs(
        &self,
        rows: Vec<&PgRow>,
        owner: &Arc<str>,
        now: Now,
    ) -> Result<Vec<ClaimedRun>, Error> {
        let mut claimed = Vec::with_capacity(rows.len());
        let mut unreadable = Vec::new();
        for row in rows {
            match claimed_run(row, owner) {
                Ok(run) => claimed.push(run),
                Err(e) => match (
                    row.try_get::<Uuid, _>("id"),
                    row.try_get::<i64, _>("lease_token"),
                ) {
                    (Ok(id), Ok(token)) => unreadable.push((id, token, e)),
                    _ => {
                        tracing::error!(error = %e, "a claimed run's row does not decode, not even its id")
                    }
                },
            }
        }
        if !unreadable.is_empty() {
            self.fail_unreadable(unreadable, now).await?;
        }
        Ok(claimed)
    }

    /// Fails claimed runs whose row does not decode, naming the column, so that one
    /// bad row neither stops the worker nor comes back at every claim.
    async fn fail_unreadable(
        &self,
        runs: Vec<(Uuid, i64, sqlx::Error)>,
        now: Now,
    ) -> Result<(), Error> {
        let mut ids = Vec::new();
        let mut tokens = Vec::new();
        let mut messages = Vec::new();
        for (id, token, e) in runs {
            let message = format!("flow could not read this run's stored row: {e}");
            tracing::error!(run_id = %id, error = %message, "failing a run whose row does not decode");
            ids.push(id);
            tokens.push(token);
            messages.push(flow_core::storable_message(&message));
        }
        on_conn!(self, repeat = true, |conn| async {
            sqlx::query(
                "UPDATE flow.runs r
                 SET status = 'failed', error = u.message, error_kind = 'storage',
                     finished_at = COALESCE($4::timestamptz, now()),
                     lease_owner = NULL, lease_expires_at = NULL
                 FROM unnest($1::uuid[], $2::bigint[], $3::text[]) AS u(id, token, message)
                 WHERE r.id = u.id AND r.lease_token = u.token AND r.status = 'running'",
            )
            .bind(&ids)
            .bind(&tokens)
            .bind(&messages)
            .bind(now.at())
            .execute(&mut *conn)
            .await
            .map_err(db_error)
        })?;
        Ok(())
    }

    async fn notify(&self) -> Result<(), Error> {
        on_conn!(self, repeat = true, |conn| async {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(WAKEUP_CHANNEL)
                .execute(&mut *conn)
                .await
                .map_err(db_error)
        })?;
        Ok(())
    }
}

/// The claim's part of the commit statement's parameters.
struct ClaimArgs<'a> {
    functions: &'a [String],
    max: i64,
    owner: Option<&'a str>,
    lease: f64,
}

/// The commit statement with its parameters bound.
fn commit_query<'q>(
    input: &'q CommitInput,
    payloads: &'q [String],
    claim: &ClaimArgs<'q>,
    lease_for: Duration,
    now: Now,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(COMMIT)
        .bind(&input.run_ids)
        .bind(&input.tokens)
        .bind(&input.statuses)
        .bind(&input.not_before)
        .bind(&input.outputs)
        .bind(&input.errors)
        .bind(&input.error_kinds)
        .bind(&input.error_steps)
        .bind(&input.executing)
        .bind(&input.progress)
        .bind(seconds(lease_for))
        .bind(now.at())
        .bind(&input.steps.run_ids)
        .bind(&input.steps.tokens)
        .bind(&input.steps.keys)
        .bind(&input.steps.positions)
        .bind(&input.steps.kinds)
        .bind(&input.steps.outputs)
        .bind(&input.steps.errors)
        .bind(&input.steps.attempts)
        .bind(&input.steps.started)
        .bind(&input.steps.finished)
        .bind(&input.steps.wakes)
        .bind(&input.failures.run_ids)
        .bind(&input.failures.tokens)
        .bind(&input.failures.keys)
        .bind(&input.failures.attempts)
        .bind(&input.failures.errors)
        .bind(&input.failures.started)
        .bind(&input.failures.finished)
        .bind(&input.failures.retry_at)
        .bind(payloads)
        .bind(&input.due_now)
        .bind(&input.step_counts)
        .bind(claim.functions)
        .bind(claim.max)
        .bind(claim.owner)
        .bind(claim.lease)
        .bind(&input.extend)
        .bind(&input.waits.run_ids)
        .bind(&input.waits.tokens)
        .bind(&input.waits.keys)
        .bind(&input.waits.positions)
        .bind(&input.waits.names)
        .bind(&input.waits.fields)
        .bind(&input.waits.values)
        .bind(&input.waits.lookbacks)
        .bind(&input.waits.expires)
}

/// What the commit statement kept: the run rows it updated (so their lease held)
/// and the step rows it inserted.
struct CommitRows {
    leased: HashSet<(Uuid, i64)>,
    inserted: HashSet<(Uuid, String)>,
}

impl CommitRows {
    fn of(rows: &[PgRow]) -> Result<CommitRows, Error> {
        let mut kept = CommitRows {
            leased: HashSet::new(),
            inserted: HashSet::new(),
        };
        for row in rows {
            match row.try_get::<&str, _>("what").map_err(db_error)? {
                "run" => {
                    kept.leased.insert((
                        row.try_get::<Uuid, _>("id").map_err(db_error)?,
                        row.try_get::<i64, _>("lease_token").map_err(db_error)?,
                    ));
                }
                "step" => {
                    kept.inserted.insert((
                        row.try_get::<Uuid, _>("id").map_err(db_error)?,
                        row.try_get::<String, _>("key").map_err(db_error)?,
                    ));
                }
                _ => {}
            }
        }
        Ok(kept)
    }

    /// What the statement did with one transition of its batch.
    fn committed(&self, lease: &Lease, transition: &Transition) -> Committed {
        if !self.leased.contains(&(lease.run_id.0, lease.token)) {
            return Committed::LeaseLost;
        }
        let recorded: Vec<String> = transition
            .steps
            .iter()
            .filter(|s| !self.inserted.contains(&(lease.run_id.0, s.key.clone())))
            .map(|s| s.key.clone())
            .collect();
        if recorded.is_empty() {
            Committed::Written
        } else {
            Committed::AlreadyRecorded(recorded)
        }
    }
}

/// A claimed run from its row; an error names the column that does not decode.
fn claimed_run(row: &PgRow, owner: &Arc<str>) -> Result<ClaimedRun, sqlx::Error> {
    let token: i64 = row.try_get("lease_token")?;
    let step_count = row.try_get::<i32, _>("step_count")? as u32;
    Ok(ClaimedRun {
        lease: Lease {
            run_id: RunId(row.try_get("id")?),
            token,
            owner: Arc::clone(owner),
        },
        function_id: row.try_get("function_id")?,
        event: StoredEvent {
            id: EventId(row.try_get("event_id")?),
            name: row.try_get("name")?,
            data: row.try_get("data")?,
            ts: row.try_get("ts")?,
        },
        resumed: token > 1,
        lost_count: row.try_get::<i32, _>("lost_count")? as u32,
        blocked_count: row.try_get::<i32, _>("blocked_count")? as u32,
        step_count,
        checkpoints: row
            .try_get::<Option<Value>, _>("checkpoints")?
            .and_then(|c| claimed_checkpoints(c, step_count)),
        key_problem: None,
    })
}

/// The checkpoints the claim read (`{steps, failed, waits}`), if they can stand for
/// a load: they decode, and they hold as many step records as the run's row
/// counts. Fewer means records committed after the claim's snapshot (an event or
/// an invoked run resolved a wait meanwhile): the worker loads them afresh.
fn claimed_checkpoints(value: Value, step_count: u32) -> Option<Checkpoints> {
    #[derive(serde::Deserialize)]
    struct Read {
        steps: Vec<ReadStep>,
        failed: Vec<(String, u32)>,
        waits: Vec<(String, DateTime<Utc>)>,
    }
    #[derive(serde::Deserialize)]
    struct ReadStep {
        key: String,
        position: u32,
        kind: String,
        output: Option<Value>,
        error: Option<Value>,
        attempts: u32,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        wake_at: Option<DateTime<Utc>>,
    }
    // What does not decode here is loaded, and reported, by the load.
    let read: Read = serde_json::from_value(value).ok()?;
    if read.steps.len() < step_count as usize {
        return None;
    }
    let steps = read
        .steps
        .into_iter()
        .map(|s| {
            Some(StepRecord {
                kind: s.kind.parse().ok()?,
                key: s.key,
                position: s.position,
                output: s.output,
                error: s.error,
                attempts: s.attempts,
                started_at: s.started_at,
                finished_at: s.finished_at,
                wake_at: s.wake_at,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Checkpoints {
        steps,
        failed_attempts: read.failed,
        waits: read
            .waits
            .into_iter()
            .map(|(key, expires_at)| OpenWait { key, expires_at })
            .collect(),
    })
}

/// A step's record; an error names the step and what does not read.
fn step_record(row: &PgRow) -> Result<StepRecord, Error> {
    let key: String = col(row, "key")?;
    read_step_record(row, key.clone()).map_err(|e| StepRecord::unreadable(&key, e))
}

fn read_step_record(row: &PgRow, key: String) -> Result<StepRecord, Error> {
    Ok(StepRecord {
        key,
        position: col::<i32>(row, "position")? as u32,
        kind: col::<&str>(row, "kind")?.parse()?,
        output: col(row, "output")?,
        error: col(row, "error")?,
        attempts: col::<i32>(row, "attempts")? as u32,
        started_at: col(row, "started_at")?,
        finished_at: col(row, "finished_at")?,
        wake_at: col(row, "wake_at")?,
    })
}

/// A batch of transitions as the commit statement's arrays.
#[derive(Default)]
struct CommitInput {
    run_ids: Vec<Uuid>,
    tokens: Vec<i64>,
    statuses: Vec<&'static str>,
    not_before: Vec<Option<DateTime<Utc>>>,
    due_now: Vec<bool>,
    step_counts: Vec<Option<i32>>,
    outputs: Vec<Option<Value>>,
    errors: Vec<Option<String>>,
    error_kinds: Vec<Option<&'static str>>,
    error_steps: Vec<Option<String>>,
    executing: Vec<Option<String>>,
    progress: Vec<bool>,
    extend: Vec<bool>,
    steps: StepArrays,
    failures: FailureArrays,
    waits: WaitArrays,
}

/// The waits for events a batch's parks register.
#[derive(Default)]
struct WaitArrays {
    run_ids: Vec<Uuid>,
    tokens: Vec<i64>,
    keys: Vec<String>,
    positions: Vec<i32>,
    names: Vec<String>,
    fields: Vec<String>,
    values: Vec<Option<Value>>,
    lookbacks: Vec<f64>,
    expires: Vec<DateTime<Utc>>,
}

#[derive(Default)]
struct StepArrays {
    run_ids: Vec<Uuid>,
    tokens: Vec<i64>,
    keys: Vec<String>,
    positions: Vec<i32>,
    kinds: Vec<&'static str>,
    outputs: Vec<Option<Value>>,
    errors: Vec<Option<Value>>,
    attempts: Vec<i32>,
    started: Vec<DateTime<Utc>>,
    finished: Vec<DateTime<Utc>>,
    wakes: Vec<Option<DateTime<Utc>>>,
}

#[derive(Default)]
struct FailureArrays {
    run_ids: Vec<Uuid>,
    tokens: Vec<i64>,
    keys: Vec<String>,
    attempts: Vec<i32>,
    errors: Vec<Value>,
    started: Vec<DateTime<Utc>>,
    finished: Vec<DateTime<Utc>>,
    retry_at: Vec<DateTime<Utc>>,
}

impl CommitInput {
    fn of(batch: &[(Lease, Transition)]) -> CommitInput {
        let mut input = CommitInput::default();
        let mut rows: HashMap<(Uuid, i64), usize> = HashMap::new();
        for (lease, t) in batch {
            let update = t.next.run_update();
            let failure = update.failure;
            // One run row per lease: an UPDATE joined to two input rows of one run
            // applies only one of them. Later transitions of a run come after
            // earlier ones, so the last that leaves the run (park, finish) decides.
            let row = match rows.get(&(lease.run_id.0, lease.token)) {
                Some(&row) => row,
                None => {
                    rows.insert((lease.run_id.0, lease.token), input.run_ids.len());
                    input.run_ids.push(lease.run_id.0);
                    input.tokens.push(lease.token);
                    input.statuses.push("running");
                    input.not_before.push(None);
                    input.due_now.push(false);
                    input.step_counts.push(None);
                    input.outputs.push(None);
                    input.errors.push(None);
                    input.error_kinds.push(None);
                    input.error_steps.push(None);
                    input.executing.push(None);
                    input.progress.push(false);
                    input.extend.push(false);
                    input.run_ids.len() - 1
                }
            };
            if t.next != Next::Continue {
                input.statuses[row] = update.status.as_str();
                (input.not_before[row], input.due_now[row]) = match update.due {
                    Due::Unchanged => (None, false),
                    Due::Now => (None, true),
                    Due::At(at) => (Some(at), false),
                };
                input.outputs[row] = update.output.cloned();
                input.errors[row] = failure.map(|f| f.message.clone());
                input.error_kinds[row] = failure.map(|f| f.kind.as_str());
                input.error_steps[row] = failure.and_then(|f| f.step.clone());
            }
            if t.executing.is_some() {
                input.executing[row] = t.executing.clone();
            }
            input.progress[row] |= t.is_progress();
            input.extend[row] |= t.extend_lease;
            if let Some(count) = t.step_count {
                let count = i32::try_from(count).unwrap_or(i32::MAX);
                input.step_counts[row] = input.step_counts[row].max(Some(count));
            }
            for step in &t.steps {
                let s = &mut input.steps;
                s.run_ids.push(lease.run_id.0);
                s.tokens.push(lease.token);
                s.keys.push(step.key.clone());
                s.positions.push(step.position as i32);
                s.kinds.push(step.kind.as_str());
                s.outputs.push(step.output.clone());
                s.errors.push(step.error.clone());
                s.attempts.push(step.attempts as i32);
                s.started.push(step.started_at);
                s.finished.push(step.finished_at);
                s.wakes.push(step.wake_at);
            }
            if let Next::Park(park) = &t.next {
                for wait in &park.wake.events {
                    let w = &mut input.waits;
                    w.run_ids.push(lease.run_id.0);
                    w.tokens.push(lease.token);
                    w.keys.push(wait.key.clone());
                    w.positions.push(wait.position as i32);
                    w.names.push(wait.name.clone());
                    w.fields.push(wait.field.clone());
                    w.values.push(wait.value.clone());
                    w.lookbacks
                        .push((wait.lookback + EVENT_TIME_MARGIN).as_secs_f64());
                    w.expires.push(wait.expires_at);
                }
            }
            if let Some(failure) = &t.failure {
                let f = &mut input.failures;
                f.run_ids.push(lease.run_id.0);
                f.tokens.push(lease.token);
                f.keys.push(failure.key.clone());
                f.attempts.push(failure.attempt as i32);
                f.errors.push(failure.error.clone());
                f.started.push(failure.started_at);
                f.finished.push(failure.finished_at);
                f.retry_at.push(failure.retry_at);
            }
        }
        input
    }
}

/// The NOTIFY payloads a batch sends: empty ("claim now") when it hands runs back,
/// and the earliest due time of the runs it parks that are to be announced
/// ([`Transition::announce_wake`]), so that a run parked by a worker that then
/// stops still wakes on time elsewhere.
fn wakeup_payloads(batch: &[(Lease, Transition)]) -> Vec<String> {
    let mut payloads = Vec::new();
    if batch.iter().any(|(_, t)| t.next == Next::Release) {
        payloads.push(String::new());
    }
    let earliest = batch
        .iter()
        .filter(|(_, t)| t.announce_wake)
        .filter_map(|(_, t)| t.next.wake_at())
        .min();
    if let Some(at) = earliest {
        payloads.push(at.timestamp_micros().to_string());
    }
    payloads
}

/// A column's value, or an error naming the column: a row that does not decode
/// fails what reads it, never the worker or the client.
fn col<'r, T>(row: &'r PgRow, name: &str) -> Result<T, Error>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(name)
        .map_err(|e| Error::Database(format!("column `{name}` does not read: {e}")))
}

/// The commit statement ([`PgStore::commit_claiming`]); `$36` is 0 when nothing
/// is claimed. Every row it touches is found through a primary key: a prepared
/// statement's generic plan takes each unnest for 10 rows and a fresh queue table
/// for a handful, and would otherwise walk the index of leased rows (dead entries
/// included) once per transition of the batch, or hash-join against whole tables.
/// So the fence compares `status` with `(SELECT 'running')`, which the planner
/// cannot match to that partial index, leaving the lookup of each transition's
/// row by its id; the claimed rows and their events are found by
/// `= ANY(ARRAY(...))` of their ids.
const COMMIT: &str = concat!(
    "WITH clock AS (
         SELECT COALESCE($12::timestamptz, now()) AS now
     ), t AS (
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::timestamptz[],
                              $5::jsonb[], $6::text[], $7::text[], $8::text[], $9::text[],
                              $10::boolean[], $33::boolean[], $34::integer[],
                              $39::boolean[])
             AS t(run_id, token, status, not_before, output, error, error_kind, error_step,
                  executing, progress, due_now, step_count, extend)
     ), w AS (
         SELECT u.run_id, u.token, u.key, u.position, u.name, u.field,
                COALESCE(u.value::text, '') AS value, u.lookback, u.expires_at
         FROM unnest($40::uuid[], $41::bigint[], $42::text[], $43::integer[], $44::text[],
                     $45::text[], $46::jsonb[], $47::float8[], $48::timestamptz[])
             AS u(run_id, token, key, position, name, field, value, lookback, expires_at)
     ), awaited AS (
         INSERT INTO flow.awaited_fields (name, field, added_at)
         SELECT DISTINCT name, field, clock.now FROM w, clock
         ON CONFLICT DO NOTHING
         RETURNING name, field
     ), keyed AS (
         -- The rendezvous with sends (see migration 6), locked in key order and
         -- before any run row (the fence below reads `hits`).
         INSERT INTO flow.wait_keys AS k (name, field, value, waits)
         SELECT DISTINCT name, field, value, 1::bigint FROM w ORDER BY name, field, value
         ON CONFLICT (name, field, value) DO UPDATE SET waits = k.waits + 1
         RETURNING k.name, k.field, k.value, k.event_id, k.event_at
     ), since AS (
         -- A wait registered before keeps its start.
         SELECT w.*, COALESCE(o.since, COALESCE(r.wait_since, r.created_at)
                                       - w.lookback * interval '1 second') AS since
         FROM w JOIN flow.runs r ON r.id = w.run_id
         LEFT JOIN flow.waits o ON o.run_id = w.run_id AND o.key = w.key
     ), hits AS (
         -- Waits an event resolves already: the key's latest event, if it was
         -- stored since the wait began, or if its send committed after this
         -- statement began (the key's event differs from the one this statement
         -- sees: its data is not visible yet, so the run is woken and its replay
         -- records it); for a key no send has written (its events came before
         -- anyone waited on the field), the latest matching stored event. Never
         -- an event the run received before.
         SELECT s.run_id, s.token, s.key, s.position, c.event_id, c.visible
         FROM since s
         JOIN keyed k ON k.name = s.name AND k.field = s.field AND k.value = s.value
         LEFT JOIN flow.wait_keys seen
             ON seen.name = s.name AND seen.field = s.field AND seen.value = s.value
         CROSS JOIN LATERAL (
             SELECT k.event_id, COALESCE(k.event_id = seen.event_id, false) AS visible
             WHERE k.event_id IS NOT NULL
               AND (k.event_at > s.since OR k.event_id IS DISTINCT FROM seen.event_id)
             UNION ALL
             (SELECT e.id, true FROM flow.events e
              WHERE k.event_id IS NULL AND e.name = s.name AND e.received_at > s.since
                AND (s.field = '' OR (e.data -> s.field)::text = s.value)
              ORDER BY e.received_at DESC
              LIMIT 1)
         ) c
         WHERE NOT EXISTS (SELECT 1 FROM flow.steps p
                           WHERE p.run_id = s.run_id AND p.kind = 'wait'
                             AND p.output->>'id' = c.event_id::text)
     ), first_waits AS (
         -- Runs waiting on a field added less than a second ago, or not yet in
         -- this statement's snapshot (this statement adds it, or a concurrent
         -- one did): a send in flight may have read the fields before it was
         -- added, stored no key for it, and commit after this statement's
         -- snapshot, unseen by both. They look again a moment later, once such
         -- a send has committed.
         SELECT w.run_id FROM w
         WHERE NOT EXISTS (SELECT 1 FROM flow.awaited_fields a
                           WHERE a.name = w.name AND a.field = w.field
                             AND a.added_at <= (SELECT now FROM clock) - interval '1 second')
     ), leased AS (
         -- A park whose run was marked while it executed (an invoked run ended,
         -- migration 8) makes it due at once; `r` is the row's latest version.
         UPDATE flow.runs r
         SET status = CASE WHEN t.run_id IN (SELECT run_id FROM hits) THEN 'queued'
                           WHEN t.status IN ('waiting', 'sleeping', 'queued')
                                AND r.woken_under = r.lease_token THEN 'queued'
                           ELSE t.status END,
             not_before = CASE WHEN t.due_now OR t.run_id IN (SELECT run_id FROM hits)
                               THEN clock.now
                               WHEN t.status IN ('waiting', 'sleeping', 'queued')
                                    AND r.woken_under = r.lease_token THEN clock.now
                               WHEN t.run_id IN (SELECT run_id FROM first_waits)
                               THEN LEAST(t.not_before, clock.now + interval '1 second')
                               ELSE COALESCE(t.not_before, r.not_before) END,
             wait_since = CASE WHEN t.run_id IN (SELECT run_id FROM hits) THEN clock.now
                               WHEN t.status IN ('waiting', 'sleeping', 'queued')
                                    AND r.woken_under = r.lease_token THEN clock.now
                               WHEN t.not_before IS NOT NULL
                                    AND t.status IN ('sleeping', 'waiting', 'queued')
                               THEN t.not_before
                               WHEN t.progress THEN clock.now
                               ELSE r.wait_since END,
             lease_owner = CASE WHEN t.status = 'running' THEN r.lease_owner END,
             lease_expires_at = CASE WHEN t.status <> 'running' THEN NULL
                                     WHEN t.extend THEN clock.now + $11 * interval '1 second'
                                     ELSE r.lease_expires_at END,
             lost_count = CASE WHEN t.progress THEN 0 ELSE r.lost_count END,
             blocked_count = CASE WHEN t.status = 'blocked' THEN r.blocked_count + 1
                                  WHEN t.progress THEN 0 ELSE r.blocked_count END,
             step_count = GREATEST(r.step_count, COALESCE(t.step_count, 0)),
             current_step = CASE WHEN t.executing IS NOT NULL THEN t.executing
                                 WHEN t.progress THEN NULL ELSE r.current_step END,
             output = t.output, error = t.error, error_kind = t.error_kind,
             error_step = t.error_step,
             finished_at = CASE WHEN t.status IN ('completed', 'failed', 'cancelled')
                                THEN clock.now END
         FROM t, clock
         WHERE r.id = t.run_id AND r.lease_token = t.token
           AND r.status = (SELECT 'running')
         RETURNING r.id, r.lease_token, r.status,
                   cardinality(r.concurrency_keys) > 0 AS held_slot
     ), steps AS (
         INSERT INTO flow.steps
             (run_id, key, position, kind, output, error, attempts, started_at, finished_at,
              wake_at)
         SELECT s.run_id, s.key, s.position, s.kind, s.output, s.error, s.attempts,
                s.started_at, s.finished_at, s.wake_at
         FROM unnest($13::uuid[], $14::bigint[], $15::text[], $16::integer[], $17::text[],
                     $18::jsonb[], $19::jsonb[], $20::integer[], $21::timestamptz[],
                     $22::timestamptz[], $23::timestamptz[])
             AS s(run_id, token, key, position, kind, output, error, attempts, started_at,
                  finished_at, wake_at)
         JOIN leased l ON l.id = s.run_id AND l.lease_token = s.token
         ON CONFLICT (run_id, key) DO NOTHING
         RETURNING run_id, key
     ), attempts AS (
         INSERT INTO flow.attempts
             (run_id, key, attempt, error, started_at, finished_at, retry_at)
         SELECT a.run_id, a.key, a.attempt, a.error, a.started_at, a.finished_at,
                a.retry_at
         FROM unnest($24::uuid[], $25::bigint[], $26::text[], $27::integer[], $28::jsonb[],
                     $29::timestamptz[], $30::timestamptz[], $31::timestamptz[])
             AS a(run_id, token, key, attempt, error, started_at, finished_at, retry_at)
         JOIN leased l ON l.id = a.run_id AND l.lease_token = a.token
         ON CONFLICT (run_id, key, attempt) DO NOTHING
         RETURNING run_id
     ), resolved AS (
         INSERT INTO flow.steps
             (run_id, key, position, kind, output, error, attempts, started_at, finished_at)
         SELECT DISTINCT ON (h.run_id, h.key) h.run_id, h.key, h.position, 'wait',
                jsonb_build_object('id', e.id, 'name', e.name, 'data', e.data, 'ts', e.ts),
                NULL::jsonb, 1, clock.now, clock.now
         FROM hits h JOIN leased l ON l.id = h.run_id AND l.lease_token = h.token
         JOIN flow.events e ON e.id = h.event_id, clock
         WHERE h.visible
         ON CONFLICT (run_id, key) DO NOTHING
         RETURNING run_id
     ), registered AS (
         INSERT INTO flow.waits AS o
             (run_id, key, token, position, name, field, value, since, expires_at)
         SELECT s.run_id, s.key, s.token, s.position, s.name, s.field, s.value, s.since,
                s.expires_at
         FROM since s JOIN leased l ON l.id = s.run_id AND l.lease_token = s.token
         WHERE NOT EXISTS (SELECT 1 FROM hits h
                           WHERE h.run_id = s.run_id AND h.key = s.key AND h.visible)
         ON CONFLICT (run_id, key) DO UPDATE SET token = EXCLUDED.token
         RETURNING 1
     ), closed AS (
         -- Waits that end: resolved here, or timed out (the run recorded it, for
         -- an event, an invoke or a signal); a run that ends closes its own (a trigger).
         DELETE FROM flow.waits x
         WHERE (x.run_id, x.key) IN (
                   SELECT h.run_id, h.key FROM hits h
                   JOIN leased l ON l.id = h.run_id AND l.lease_token = h.token
                   WHERE h.visible
                   UNION ALL
                   SELECT s.run_id, s.key
                   FROM unnest($13::uuid[], $14::bigint[], $15::text[], $17::text[])
                       AS s(run_id, token, key, kind)
                   JOIN leased l ON l.id = s.run_id AND l.lease_token = s.token
                   WHERE s.kind IN ('wait', 'invoke', 'signal'))
         RETURNING 1
     ), hit_notified AS (
         SELECT pg_notify('flow_wakeup', '')
         WHERE EXISTS (SELECT 1 FROM hits h JOIN leased l ON l.id = h.run_id)
     ), serving AS (
         SELECT unnest(",
    unpaused_sql!("$35"),
    ") AS id
     ), heads AS (
         -- Fair across functions: one function the worker serves, at random,
         -- gives its oldest due run first (one probe of `runs_due_by_function`),
         -- so a function's runs wait for a few claims at most (as many as the
         -- functions served, in expectation), however long another function's
         -- backlog is; one probe a claim keeps the claim cheap.
         SELECT r.id FROM flow.runs r
         WHERE r.id = (
                   -- The statuses as `runs_due_by_function` names them
                   -- (migration 19), so that index and no other serves it.
                   SELECT x.id FROM flow.runs x
                   WHERE x.function_id = (SELECT id FROM serving ORDER BY random() LIMIT 1)
                     AND x.status NOT IN ('running', 'completed', 'failed', 'cancelled',
                                          'skipped')
                     AND x.not_before <= (SELECT now FROM clock)
                     AND (x.timeout_at IS NULL OR x.timeout_at > (SELECT now FROM clock))
                     -- A worker of one function claims in due order alone.
                     AND $36 > 0 AND (SELECT count(*) FROM serving) > 1
                   ORDER BY x.not_before LIMIT 1)
           AND r.status IN ('queued', 'sleeping', 'waiting', 'blocked')
           AND r.not_before <= (SELECT now FROM clock)
           AND (r.timeout_at IS NULL OR r.timeout_at > (SELECT now FROM clock))
         FOR UPDATE SKIP LOCKED
     ), in_order AS (
         -- Then the slots left, in due order.
         SELECT id FROM flow.runs
         WHERE status IN ('queued', 'sleeping', 'waiting', 'blocked')
           AND not_before <= (SELECT now FROM clock)
           AND function_id = ANY(ARRAY(SELECT id FROM serving))
           -- Past its deadline (timeouts): cancelled, not started.
           AND (timeout_at IS NULL OR timeout_at > (SELECT now FROM clock))
           AND NOT (id = ANY(ARRAY(SELECT id FROM heads)))
         ORDER BY not_before
         LIMIT $36 - (SELECT count(*) FROM heads)
         FOR UPDATE SKIP LOCKED
     ), due AS (
         SELECT id FROM heads UNION ALL SELECT id FROM in_order
     ), ",
    claim_sql!(
        "$37",
        "$38",
        "",
        "",
        "r.id = ANY(ARRAY(SELECT id FROM due))"
    ),
    ", notified AS (
         SELECT pg_notify('flow_wakeup', p) FROM unnest($32::text[]) AS p
         WHERE EXISTS (SELECT 1 FROM leased)
     ), slot_freed AS (
         -- A run of a limited function that stops executing frees a slot of its
         -- keys: workers whose due runs waited for one claim again.
         SELECT pg_notify('flow_wakeup', '')
         WHERE EXISTS (SELECT 1 FROM leased WHERE held_slot AND status <> 'running')
     ), ",
    crate::finish::announce_finishes_sql!(
        "SELECT id FROM leased WHERE status IN ('completed', 'failed', 'cancelled')"
    ),
    "
     SELECT 'run' AS what, id, lease_token, NULL::text AS key, NULL::text AS function_id,
            NULL::integer AS lost_count, NULL::integer AS blocked_count,
            NULL::integer AS step_count, NULL::uuid AS event_id, NULL::text AS name,
            NULL::jsonb AS data, NULL::timestamptz AS ts, NULL::jsonb AS checkpoints
     FROM leased
     UNION ALL SELECT 'step', run_id, NULL, key,
                     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
     FROM steps
     UNION ALL SELECT 'attempt', run_id, NULL, NULL,
                     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
     FROM attempts
     UNION ALL SELECT 'notify', NULL, NULL, NULL,
                     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
     FROM notified
     UNION ALL SELECT 'notify', NULL, NULL, NULL,
                     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
     FROM announced
     UNION ALL SELECT 'notify', NULL, NULL, NULL,
                     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
     FROM hit_notified
     UNION ALL SELECT 'notify', NULL, NULL, NULL,
                     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
     FROM slot_freed
     UNION ALL ",
    claimed_rows_sql!()
);

#[cfg(test)]
mod tests {
    use super::*;

    fn read(steps: usize) -> Value {
        let step = serde_json::json!({
            "key": "a", "position": 0, "kind": "run", "output": {"x": 1.5}, "error": null,
            "attempts": 1, "started_at": "2026-12-07T04:20:00.123456+00:00",
            "finished_at": "2026-12-07T04:20:00.5+00:00", "wake_at": null
        });
        serde_json::json!({
            "steps": vec![step; steps],
            "failed": [["b", 2]],
            "waits": [["c", "2026-12-07T05:00:00+00:00"]],
        })
    }

    #[test]
    fn checkpoints_a_claim_read_stand_for_a_load_only_when_complete() {
        let loaded = claimed_checkpoints(read(2), 2).expect("complete");
        assert_eq!(loaded.steps.len(), 2);
        assert_eq!(loaded.steps[0].output, Some(serde_json::json!({"x": 1.5})));
        assert_eq!(loaded.failed_attempts, [("b".to_owned(), 2)]);
        assert_eq!(loaded.waits[0].key, "c");
        // A record committed after the claim's snapshot: the row counts three.
        assert!(claimed_checkpoints(read(2), 3).is_none());
        // What does not decode is left to the load, which reports it.
        let mut bad = read(1);
        bad["steps"][0]["kind"] = "no such kind".into();
        assert!(claimed_checkpoints(bad, 1).is_none());
    }
}
