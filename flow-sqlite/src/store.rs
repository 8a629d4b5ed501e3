//! [`Store`] for SQLite. The same fencing as PostgreSQL: every write for a leased
//! run matches its id, lease token and status `running`; one that matches nothing
//! is `LeaseLost`. Multi-statement operations run in one `BEGIN IMMEDIATE`
//! transaction, so each state change is atomic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use flow_core::store::{
    Checkpoints, ClaimRequest, ClaimedRun, Committed, Connect, Due, EventPage, EventQuery,
    EventView, FinishWatch, FunctionInfo, Lease, NewSignal, Next, OpenWait, ReadStore, RunPage,
    RunQuery, RunSummary, SendReceipt, Settle, SignalReceipt, StepRecord, Store, Transition,
    Wakeup, Wakeups, stored_error_message,
};
use flow_core::{
    AttemptView, Error, EventId, LostLease, NewEvent, Now, RunId, RunStatus, RunView, StoredEvent,
    Timeouts, later,
};

use crate::{SqliteStore, db_error, micros, time};
use flow_core::catalog::{
    self, CatalogCache, RateKey, SingletonMode, SkipReason, Skipped, VERSION_LIVENESS,
};
use flow_core::flow_control::Limited;
use flow_core::system::{FUNCTION_CANCELLED, FUNCTION_FAILED, FUNCTION_FINISHED};

/// The functions of the JSON array parameter `$functions`, less the paused ones
/// (`Client::pause`): what claims and an idle worker's next due time look at.
macro_rules! unpaused_sql {
    ($functions:literal) => {
        concat!(
            "(SELECT value FROM json_each(",
            $functions,
            ") WHERE value NOT IN (SELECT id FROM flow_functions WHERE paused_at IS NOT NULL))"
        )
    };
}

pub(crate) use unpaused_sql;

fn json(value: &Value) -> String {
    value.to_string()
}

pub(crate) fn parse_json(text: &str) -> Result<Value, Error> {
    serde_json::from_str(text)
        .map_err(|e| Error::Database(format!("stored JSON does not parse: {e}")))
}

pub(crate) fn uuid(text: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(text)
        .map_err(|e| Error::Database(format!("stored id `{text}` is not a UUID: {e}")))
}

/// Runs `body` in one write transaction (`BEGIN IMMEDIATE` takes the write lock at
/// once). Dropped before it commits, it rolls back.
async fn in_transaction<T>(
    store: &SqliteStore,
    body: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, Error>,
) -> Result<T, Error> {
    let mut tx = store
        .pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(db_error)?;
    let value = body(&mut tx).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(value)
}

impl Store for SqliteStore {
    fn describe(&self) -> String {
        self.described.to_string()
    }

    async fn register_functions(&self, functions: &[FunctionInfo], now: Now) -> Result<(), Error> {
        // The database is a file on this machine: its clock is this machine's.
        let now = now.or_local();
        let micros_of =
            |d: Option<Duration>| d.map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        in_transaction(self, async |conn| {
            for f in functions {
                sqlx::query(
                    "INSERT INTO flow_functions
                         (id, trigger, failures_of, start_timeout, finish_timeout, last_seen)
                     VALUES (?, ?, ?, ?, ?, ?)
                     ON CONFLICT (id) DO UPDATE SET trigger = excluded.trigger,
                         failures_of = excluded.failures_of,
                         start_timeout = excluded.start_timeout,
                         finish_timeout = excluded.finish_timeout, last_seen = excluded.last_seen",
                )
                .bind(&f.id)
                .bind(&f.trigger)
                .bind(&f.failures_of)
                .bind(micros_of(f.timeouts.start))
                .bind(micros_of(f.timeouts.finish))
                .bind(micros(now))
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
                // Its triggers replace those announced before.
                sqlx::query("DELETE FROM flow_function_triggers WHERE function_id = ?")
                    .bind(&f.id)
                    .execute(&mut *conn)
                    .await
                    .map_err(db_error)?;
                for trigger in std::iter::once(&f.trigger).chain(&f.more_triggers) {
                    sqlx::query(
                        "INSERT INTO flow_function_triggers (trigger, function_id) VALUES (?, ?)
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(trigger)
                    .bind(&f.id)
                    .execute(&mut *conn)
                    .await
                    .map_err(db_error)?;
                }
                // Its cancel triggers replace those announced before, and their
                // fields are awaited, so that sends key their events (migration 7).
                sqlx::query("DELETE FROM flow_cancel_triggers WHERE function_id = ?")
                    .bind(&f.id)
                    .execute(&mut *conn)
                    .await
                    .map_err(db_error)?;
                for cancel in &f.cancel_on {
                    sqlx::query(
                        "INSERT INTO flow_cancel_triggers (function_id, name, field) VALUES (?, ?, ?)
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&f.id)
                    .bind(cancel.event)
                    .bind(cancel.field)
                    .execute(&mut *conn)
                    .await
                    .map_err(db_error)?;
                    sqlx::query(
                        "INSERT INTO flow_awaited_fields (name, field) VALUES (?, ?)
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(cancel.event)
                    .bind(cancel.field)
                    .execute(&mut *conn)
                    .await
                    .map_err(db_error)?;
                }
            }
            keep_versions(conn, functions, now, true).await?;
            // A worker that announces a function may be a new deploy whose code
            // replays the function's blocked runs: they are tried again at once.
            let ids = serde_json::to_string(
                &functions.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
            )
            .expect("strings serialize");
            let unblocked = sqlx::query(
                "UPDATE flow_runs SET not_before = ?1
                 WHERE status = 'blocked' AND not_before > ?1
                   AND function_id IN (SELECT value FROM json_each(?2))",
            )
            .bind(micros(now))
            .bind(ids)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
            Ok(unblocked.rows_affected() > 0)
        })
        .await
        .map(|unblocked| {
            if unblocked {
                self.wake(Wakeup::Now);
            }
        })
    }

    async fn set_paused(&self, function: &str, paused: bool, now: Now) -> Result<bool, Error> {
        let now = now.or_local();
        let changed = sqlx::query(
            "UPDATE flow_functions
             SET paused_at = CASE WHEN ?2 THEN COALESCE(paused_at, ?3) END
             WHERE id = ?1",
        )
        .bind(function)
        .bind(paused)
        .bind(micros(now))
        .execute(&self.pool)
        .await
        .map_err(db_error)?
        .rows_affected()
            > 0;
        if changed && !paused {
            self.wake(Wakeup::Now);
        }
        Ok(changed)
    }

    async fn signal(&self, signal: NewSignal, now: Now) -> Result<Option<SignalReceipt>, Error> {
        let now = now.or_local();
        let receipt = in_transaction(self, async |conn| {
            crate::signals::send(conn, &signal, now).await
        })
        .await?;
        if matches!(receipt, Some(SignalReceipt::Delivered(_))) {
            self.wake(Wakeup::Now);
        }
        Ok(receipt)
    }

    async fn latest_event(&self, name: &str) -> Result<Option<DateTime<Utc>>, Error> {
        // Through `flow_events_by_name` (migration 4).
        let ts: Option<i64> = sqlx::query_scalar(
            "SELECT ts FROM flow_events WHERE name = ? ORDER BY received_at DESC LIMIT 1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(ts.map(time))
    }

    async fn keep_announced(&self, functions: &[FunctionInfo], now: Now) -> Result<(), Error> {
        let now = now.or_local();
        in_transaction(self, async |conn| {
            keep_versions(conn, functions, now, false).await
        })
        .await
    }

    async fn send(&self, events: Vec<NewEvent>, now: Now) -> Result<SendReceipt, Error> {
        let now = now.or_local();
        let ids: Vec<EventId> = events.iter().map(|_| EventId(Uuid::now_v7())).collect();
        let (mut woke, mut cancelled) = (false, Vec::new());
        let receipt = in_transaction(self, async |conn| {
            store_events(conn, &events, &ids, now, &mut woke, &mut cancelled).await
        })
        .await?;
        // A cancelled run's end may have started runs (system events).
        if !receipt.runs.is_empty() || woke || !cancelled.is_empty() {
            self.wake(Wakeup::Now);
        }
        self.finishes.announce(cancelled);
        Ok(receipt)
    }

    async fn claim(&self, request: ClaimRequest<'_>, now: Now) -> Result<Vec<ClaimedRun>, Error> {
        let now = now.or_local();
        // The claim, the events it hands over, and the failing of rows that do not
        // read, in one transaction: a bad row neither orphans the batch nor stops
        // the worker.
        in_transaction(self, async |conn| claim_on(conn, &request, now).await).await
    }

    async fn group_events(&self, run: RunId) -> Result<Vec<StoredEvent>, Error> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        crate::groups::events_of(&mut conn, run).await
    }

    async fn load(&self, run: RunId) -> Result<Checkpoints, Error> {
        let steps = sqlx::query(
            "SELECT key, position, kind, output, error, attempts, started_at, finished_at, wake_at
             FROM flow_steps WHERE run_id = ?",
        )
        .bind(run.0.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?
        .iter()
        .map(step_record)
        .collect::<Result<Vec<_>, _>>()?;
        let failed_attempts = sqlx::query(
            "SELECT key, max(attempt) AS failed FROM flow_attempts WHERE run_id = ? GROUP BY key",
        )
        .bind(run.0.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?
        .iter()
        .map(|r| Ok((col::<String>(r, "key")?, col::<i64>(r, "failed")? as u32)))
        .collect::<Result<_, Error>>()?;
        let waits = sqlx::query("SELECT key, expires_at FROM flow_waits WHERE run_id = ?")
            .bind(run.0.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?
            .iter()
            .map(|r| {
                Ok(OpenWait {
                    key: col(r, "key")?,
                    expires_at: time(col(r, "expires_at")?),
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(Checkpoints {
            steps,
            failed_attempts,
            waits,
        })
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
        self.commit_claiming(batch, Some(&claim), lease_for, now)
            .await
    }

    async fn renew(
        &self,
        leases: &[Lease],
        lease_for: Duration,
        now: Now,
    ) -> Result<Vec<RunId>, Error> {
        let now = now.or_local();
        in_transaction(self, async |conn| {
            let mut renewed = Vec::new();
            for lease in leases {
                let updated = sqlx::query(
                    "UPDATE flow_runs SET lease_expires_at = ?
                     WHERE id = ? AND lease_token = ? AND status = 'running' AND lease_expires_at > ?",
                )
                .bind(micros(later(now, lease_for)))
                .bind(lease.run_id.0.to_string())
                .bind(lease.token)
                .bind(micros(now))
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
                if updated.rows_affected() > 0 {
                    renewed.push(lease.run_id);
                }
            }
            Ok(renewed)
        })
        .await
    }

    async fn recover_expired(&self, max_lost: u32, now: Now) -> Result<u64, Error> {
        let now = now.or_local();
        let rows = sqlx::query(
            "UPDATE flow_runs
             SET lost_count = lost_count + 1,
                 lost_by = lease_owner, lost_at = ?2, lost_step = current_step,
                 lost_after = (SELECT s.key FROM flow_steps s WHERE s.run_id = flow_runs.id
                               ORDER BY s.position DESC LIMIT 1),
                 status = CASE WHEN lost_count + 1 >= ?1 THEN 'failed' ELSE 'queued' END,
                 error_kind = CASE WHEN lost_count + 1 >= ?1 THEN 'lost' END,
                 error_step = CASE WHEN lost_count + 1 >= ?1 THEN current_step END,
                 error = CASE WHEN lost_count + 1 >= ?1 THEN
                     'its worker was lost ' || (lost_count + 1) || ' times in a row without a new checkpoint, '
                     || 'the last time in ' || COALESCE('step `' || current_step || '`', 'the code before its next step')
                     || '; a step that kills its worker is not retried forever'
                     END,
                 finished_at = CASE WHEN lost_count + 1 >= ?1 THEN ?2 END,
                 not_before = ?2, lease_owner = NULL, lease_expires_at = NULL
             WHERE status = 'running' AND lease_expires_at < ?2
             RETURNING status",
        )
        .bind(max_lost as i64)
        .bind(micros(now))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        if rows
            .iter()
            .any(|r| r.try_get::<&str, _>(0).is_ok_and(|s| s == "queued"))
        {
            self.wake(Wakeup::Now);
        }
        let gave_up = rows
            .iter()
            .filter(|r| r.try_get::<&str, _>(0).is_ok_and(|s| s == "failed"))
            .count();
        self.wake_after_ending(gave_up as u64);
        Ok(rows.len() as u64)
    }

    async fn cancel_timed_out(&self, now: Now) -> Result<u64, Error> {
        let now = now.or_local();
        let ended = in_transaction(self, async |conn| {
            let rows = sqlx::query(
                "SELECT id, started_at IS NOT NULL AS started,
                        CASE WHEN started_at IS NULL THEN timeout_at - created_at
                             ELSE finish_within END AS within
                 FROM flow_runs
                 WHERE timeout_at <= ? AND status NOT IN ('completed', 'failed', 'cancelled')",
            )
            .bind(micros(now))
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?;
            let mut ended = Vec::with_capacity(rows.len());
            for row in rows {
                let id: String = col(&row, "id")?;
                let within: i64 = col(&row, "within")?;
                let within = Duration::from_micros(u64::try_from(within).unwrap_or(0));
                sqlx::query(
                    "UPDATE flow_runs
                     SET status = 'cancelled', error = ?2, error_kind = NULL, error_step = NULL,
                         finished_at = ?3, lease_owner = NULL, lease_expires_at = NULL
                     WHERE id = ?1",
                )
                .bind(&id)
                .bind(Timeouts::reason(col(&row, "started")?, within))
                .bind(micros(now))
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
                ended.push(RunId(uuid(&id)?));
            }
            Ok(ended)
        })
        .await?;
        let cancelled = ended.len() as u64;
        self.finishes.announce(ended);
        self.wake_after_ending(cancelled);
        Ok(cancelled)
    }

    async fn rerun(&self, run: RunId, now: Now) -> Result<RunId, Error> {
        let now = now.or_local();
        let fresh = RunId(Uuid::now_v7());
        in_transaction(self, async |conn| {
            let Some(source) = sqlx::query(
                "SELECT r.function_id, r.event_id, r.status,
                        EXISTS (SELECT 1 FROM flow_functions f WHERE f.id = r.function_id)
                            AS known
                 FROM flow_runs r WHERE r.id = ?",
            )
            .bind(run.0.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?
            else {
                return Err(Error::RunNotFound(run));
            };
            let status: RunStatus = col::<String>(&source, "status")?.parse()?;
            if !status.is_finished() {
                return Err(Error::NotEnded { run, status });
            }
            let function: String = col(&source, "function_id")?;
            if !col::<bool>(&source, "known")? {
                return Err(Error::FunctionNotFound(function));
            }
            sqlx::query(
                "INSERT INTO flow_runs (id, function_id, event_id, status, not_before, created_at)
                 VALUES (?1, ?2, ?3, 'queued', ?4, ?4)",
            )
            .bind(fresh.0.to_string())
            .bind(&function)
            .bind(col::<String>(&source, "event_id")?)
            .bind(micros(now))
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
            // A batch or debounce run's events, for the new run too.
            sqlx::query(
                "INSERT INTO flow_run_events (run_id, position, event_id)
                 SELECT ?1, position, event_id FROM flow_run_events WHERE run_id = ?2",
            )
            .bind(fresh.0.to_string())
            .bind(run.0.to_string())
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
            Ok(())
        })
        .await?;
        self.wake(Wakeup::Now);
        Ok(fresh)
    }

    async fn cancel(&self, run: RunId, reason: &str, now: Now) -> Result<bool, Error> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        let cancelled = cancel_run(&mut conn, run, reason, now.or_local()).await?;
        if cancelled {
            self.finishes.announce(vec![run]);
            self.wake_after_ending(1);
        }
        Ok(cancelled)
    }

    async fn cancel_runs(
        &self,
        function: &str,
        created: std::ops::Range<DateTime<Utc>>,
        reason: &str,
        now: Now,
    ) -> Result<u64, Error> {
        let rows = sqlx::query(
            "UPDATE flow_runs
             SET status = 'cancelled', error = ?4, error_kind = NULL, error_step = NULL,
                 finished_at = ?5, lease_owner = NULL, lease_expires_at = NULL
             WHERE function_id = ?1 AND created_at >= ?2 AND created_at < ?3
               AND status NOT IN ('completed', 'failed', 'cancelled', 'skipped')
             RETURNING id",
        )
        .bind(function)
        .bind(micros(created.start))
        .bind(micros(created.end))
        .bind(reason)
        .bind(micros(now.or_local()))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let ids = rows
            .iter()
            .map(|row| Ok(RunId(uuid(col(row, "id")?)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let cancelled = ids.len() as u64;
        self.finishes.announce(ids);
        self.wake_after_ending(cancelled);
        Ok(cancelled)
    }

    async fn settle_blocked(&self, run: RunId, settle: &Settle, now: Now) -> Result<bool, Error> {
        let settled = sqlx::query(
            "UPDATE flow_runs
             SET status = ?2, error = ?3 || COALESCE(' (blocked by: ' || error || ')', ''),
                 error_kind = ?4, finished_at = ?5
             WHERE id = ?1 AND status = 'blocked'",
        )
        .bind(run.0.to_string())
        .bind(settle.status().as_str())
        .bind(settle.message())
        .bind(settle.kind().map(|k| k.as_str()))
        .bind(micros(now.or_local()))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        self.wake_after_ending(settled.rows_affected());
        Ok(settled.rows_affected() == 1)
    }

    async fn next_wakeup(
        &self,
        functions: &[String],
        limited: &Limited,
    ) -> Result<Option<DateTime<Utc>>, Error> {
        let functions = serde_json::to_string(functions).expect("strings serialize");
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        // A limited function's run whose keys are full is left out: the run that
        // frees the slot wakes the workers.
        let full = if limited.is_empty() {
            Vec::new()
        } else {
            let held = crate::concurrency::held(&mut conn, limited, Utc::now()).await?;
            limited.full_pairs(&held)
        };
        let next: Option<i64> = sqlx::query_scalar(concat!(
            "SELECT min(t) FROM (
             SELECT * FROM (SELECT not_before AS t FROM flow_runs
                            WHERE status IN ('queued', 'sleeping', 'waiting', 'blocked')
                              AND function_id IN ",
            unpaused_sql!("?1"),
            "
                            ORDER BY not_before LIMIT 1)
             UNION ALL
             SELECT * FROM (SELECT r.not_before AS t FROM flow_runs r
                            WHERE r.status IN ('queued', 'sleeping', 'waiting', 'blocked')
                              AND r.function_id IN ",
            unpaused_sql!("?2"),
            "
                              AND ",
            crate::concurrency::not_full_sql!("?3"),
            "
                            ORDER BY r.not_before LIMIT 1)
             UNION ALL
             SELECT min(lease_expires_at) FROM flow_runs WHERE status = 'running'
             UNION ALL
             SELECT min(timeout_at) FROM flow_runs
             WHERE timeout_at IS NOT NULL AND status NOT IN ('completed', 'failed', 'cancelled'))"
        ))
        .bind(functions)
        .bind(serde_json::to_string(limited.ids()).expect("strings serialize"))
        .bind(serde_json::to_string(&full).expect("strings serialize"))
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
        Ok(next.map(time))
    }

    async fn database_time(&self) -> Result<DateTime<Utc>, Error> {
        // The file is on this machine: there is no other clock to agree with.
        Ok(Utc::now())
    }

    async fn detached(&self) -> Result<Self, Error> {
        // A connection handed back to the pool is returned by a task on the runtime
        // that dropped it: a blocked runtime would keep the only connection. The
        // renewal thread gets one of its own on the same file (writers take turns
        // under the busy timeout).
        let options = (*self.pool.connect_options()).clone();
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(db_error)?;
        Ok(SqliteStore {
            pool,
            wakeups: self.wakeups.clone(),
            finishes: self.finishes.clone(),
            described: self.described.clone(),
        })
    }

    async fn wakeups(&self) -> Result<Wakeups, Error> {
        let receiver = self.wakeups.subscribe();
        Ok(Box::pin(futures::stream::unfold(
            receiver,
            |mut receiver| async move {
                loop {
                    match receiver.recv().await {
                        Ok(wakeup) => return Some((wakeup, receiver)),
                        // Missed some: look now.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            return Some((Wakeup::Now, receiver));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            // Kept alive by this store; wait forever rather than spin.
                            std::future::pending::<()>().await;
                        }
                    }
                }
            },
        )))
    }
}

impl ReadStore for SqliteStore {
    async fn watch_finish(&self, run: RunId) -> Result<FinishWatch, Error> {
        Ok(self.finishes.watch(run))
    }

    async fn functions(&self) -> Result<Vec<flow_core::FunctionView>, Error> {
        let rows = sqlx::query(
            "SELECT f.id, f.trigger, f.last_seen, f.paused_at, f.send_rules,
                    (SELECT json_group_array(trigger) FROM
                         (SELECT t.trigger FROM flow_function_triggers t
                          WHERE t.function_id = f.id AND t.trigger <> f.trigger
                          ORDER BY t.trigger)) AS more_triggers
             FROM flow_functions f ORDER BY f.id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let trigger: String = col(row, "trigger")?;
                let more: Vec<String> = serde_json::from_str(&col::<String>(row, "more_triggers")?)
                    .map_err(|e| {
                        Error::Database(format!("a function's triggers do not read: {e}"))
                    })?;
                Ok(flow_core::FunctionView {
                    id: col(row, "id")?,
                    triggers: std::iter::once(trigger.clone()).chain(more).collect(),
                    trigger,
                    send_rules: col::<Option<String>>(row, "send_rules")?
                        .map(|rules| parse_json(&rules))
                        .transpose()?,
                    last_seen: time(col(row, "last_seen")?),
                    paused_at: col::<Option<i64>>(row, "paused_at")?.map(time),
                })
            })
            .collect()
    }

    async fn events(&self, query: &EventQuery) -> Result<EventPage, Error> {
        let rows = sqlx::query(
            "SELECT id, name, data, producer_id, ts, received_at FROM flow_events
             WHERE (?1 IS NULL OR name = ?1) AND (?2 IS NULL OR id < ?2)
             ORDER BY id DESC
             LIMIT ?3",
        )
        .bind(query.name.as_deref())
        .bind(query.after.map(|e| e.0.to_string()))
        .bind(i64::from(query.limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let events = rows
            .iter()
            .map(|row| {
                Ok(EventView {
                    id: EventId(uuid(&col::<String>(row, "id")?)?),
                    name: col(row, "name")?,
                    data: parse_json(&col::<String>(row, "data")?)?,
                    producer_id: col(row, "producer_id")?,
                    ts: time(col(row, "ts")?),
                    received_at: time(col(row, "received_at")?),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(EventPage::of(events, query.limit))
    }

    async fn runs(&self, query: &RunQuery) -> Result<RunPage, Error> {
        let statuses: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
        let statuses = serde_json::to_string(&statuses).map_err(|e| Error::Serde(e.to_string()))?;
        let event = query.event.map(|e| e.0.to_string());
        let rows = sqlx::query(
            "SELECT id, function_id, event_id, status, error, created_at, started_at, finished_at
             FROM flow_runs
             WHERE (?1 IS NULL OR function_id = ?1)
               AND (?2 = '[]' OR status IN (SELECT value FROM json_each(?2)))
               AND (?3 IS NULL OR created_at >= ?3)
               AND (?4 IS NULL OR created_at < ?4)
               AND (?5 IS NULL OR event_id = ?5
                    OR id IN (SELECT run_id FROM flow_run_events WHERE event_id = ?5))
               AND (?6 IS NULL OR id < ?6)
             ORDER BY id DESC
             LIMIT ?7",
        )
        .bind(query.function.as_deref())
        .bind(&statuses)
        .bind(query.created_from.map(micros))
        .bind(query.created_to.map(micros))
        .bind(&event)
        .bind(query.after.map(|r| r.0.to_string()))
        .bind(i64::from(query.limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let runs = rows
            .iter()
            .map(|row| {
                Ok(RunSummary {
                    id: RunId(uuid(&col::<String>(row, "id")?)?),
                    function_id: col(row, "function_id")?,
                    event_id: EventId(uuid(&col::<String>(row, "event_id")?)?),
                    status: col::<String>(row, "status")?.parse()?,
                    error: col(row, "error")?,
                    created_at: time(col(row, "created_at")?),
                    started_at: col::<Option<i64>>(row, "started_at")?.map(time),
                    finished_at: col::<Option<i64>>(row, "finished_at")?.map(time),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(RunPage::of(runs, query.limit))
    }

    async fn run(&self, id: RunId) -> Result<Option<RunView>, Error> {
        // One snapshot: the run, its steps and its attempts as of one moment.
        let mut tx = self.pool.begin_with("BEGIN").await.map_err(db_error)?;
        let key = id.0.to_string();
        let Some(row) = sqlx::query(
            "SELECT id, function_id, event_id, status, output, error, error_kind, error_step,
                    created_at, started_at, finished_at, lost_by, lost_at, lost_step, lost_after
             FROM flow_runs WHERE id = ?",
        )
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?
        else {
            return Ok(None);
        };
        let steps = sqlx::query(
            "SELECT key, position, kind, output, error, attempts, started_at, finished_at, wake_at
             FROM flow_steps WHERE run_id = ? ORDER BY position",
        )
        .bind(&key)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?
        .iter()
        .map(|r| step_record(r).map(StepRecord::into_view))
        .collect::<Result<Vec<_>, _>>()?;
        let failures = sqlx::query(
            "SELECT key, attempt, error, retry_at FROM flow_attempts WHERE run_id = ?
             ORDER BY finished_at, key, attempt",
        )
        .bind(&key)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?
        .iter()
        .map(|r| {
            Ok(AttemptView {
                step: col(r, "key")?,
                attempt: col::<i64>(r, "attempt")? as u32,
                error: stored_error_message(&parse_json(col(r, "error")?)?),
                retry_at: time(col(r, "retry_at")?),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
        Ok(Some(RunView {
            id,
            function_id: col(&row, "function_id")?,
            event_id: EventId(uuid(col(&row, "event_id")?)?),
            status: col::<&str>(&row, "status")?.parse()?,
            output: col::<Option<&str>>(&row, "output")?
                .map(parse_json)
                .transpose()?,
            error: col(&row, "error")?,
            failure_kind: col::<Option<&str>>(&row, "error_kind")?
                .map(str::parse)
                .transpose()?,
            failure_step: col(&row, "error_step")?,
            last_lost: match col::<Option<String>>(&row, "lost_by")? {
                Some(worker) => Some(LostLease {
                    worker,
                    at: time(col::<Option<i64>>(&row, "lost_at")?.unwrap_or_default()),
                    step: col(&row, "lost_step")?,
                    after_step: col(&row, "lost_after")?,
                }),
                None => None,
            },
            created_at: time(col(&row, "created_at")?),
            started_at: col::<Option<i64>>(&row, "started_at")?.map(time),
            finished_at: col::<Option<i64>>(&row, "finished_at")?.map(time),
            steps,
            handler_attempts: flow_core::store::handler_attempts(&failures),
            failures,
        }))
    }
}

impl SqliteStore {
    /// The batch, then the claim if there is one (which may take back what the
    /// batch made due), in one transaction: one commit for the whole of it.
    async fn commit_claiming(
        &self,
        batch: &[(Lease, Transition)],
        claim: Option<&ClaimRequest<'_>>,
        lease_for: Duration,
        now: Now,
    ) -> Result<(Vec<Committed>, Vec<ClaimedRun>), Error> {
        let now = now.or_local();
        let (mut woke, mut cancelled) = (false, Vec::new());
        let (results, claimed) = in_transaction(self, async |conn| {
            let mut results = Vec::with_capacity(batch.len());
            for (lease, t) in batch {
                let committed =
                    commit_one(conn, lease, t, lease_for, now, &mut woke, &mut cancelled).await?;
                results.push(committed);
            }
            let ended = batch
                .iter()
                .zip(&results)
                .any(|((_, t), r)| matches!(t.next, Next::Finish(_)) && *r != Committed::LeaseLost);
            if ended && !woke {
                woke = system_event_consumers(conn).await?;
            }
            let claimed = match claim {
                Some(claim) => claim_on(conn, claim, now).await?,
                None => Vec::new(),
            };
            Ok((results, claimed))
        })
        .await?;
        self.announce_commit(batch, &results);
        // Runs cancelled by events the batch sent.
        woke |= !cancelled.is_empty();
        self.finishes.announce(cancelled);
        if woke {
            self.wake(Wakeup::Now);
        }
        Ok((results, claimed))
    }

    /// Tells this process's workers of runs a write that ended `ended` runs (a
    /// cancel, a settlement, a recovery: none on the hot path) may have made due:
    /// the runs of functions triggered by flow's system events, and the parents of
    /// invoked runs. Others find them at their poll.
    fn wake_after_ending(&self, ended: u64) {
        if ended > 0 {
            self.wake(Wakeup::Now);
        }
    }

    /// What a committed batch announces: to workers, "now" for a hand-back and the
    /// earliest due time of the runs it parked that are to be announced; to waiting clients, the runs it
    /// finished.
    fn announce_commit(&self, batch: &[(Lease, Transition)], results: &[Committed]) {
        let finished: Vec<RunId> = batch
            .iter()
            .zip(results)
            .filter(|((_, t), r)| matches!(t.next, Next::Finish(_)) && **r != Committed::LeaseLost)
            .map(|((lease, _), _)| lease.run_id)
            .collect();
        self.finishes.announce(finished);
        if batch.iter().any(|(_, t)| t.next == Next::Release) {
            self.wake(Wakeup::Now);
        }
        let earliest = batch
            .iter()
            .zip(results)
            .filter(|((_, t), r)| t.announce_wake && **r != Committed::LeaseLost)
            .filter_map(|((_, t), _)| t.next.wake_at())
            .min();
        if let Some(at) = earliest {
            self.wake(Wakeup::At(at));
        }
    }
}

impl Connect for SqliteStore {
    async fn connect(url: &str) -> Result<Self, Error> {
        SqliteStore::connect(url).await
    }
}

/// A claimed run from its row and its event's; an error names what does not read.
/// A claim on `conn`, inside the caller's transaction.
async fn claim_on(
    conn: &mut SqliteConnection,
    request: &ClaimRequest<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<ClaimedRun>, Error> {
    let functions = serde_json::to_string(request.functions).expect("strings serialize");
    let rows = sqlx::query(concat!(
        "UPDATE flow_runs
         SET status = 'running', lease_owner = ?1, lease_token = lease_token + 1,
             lease_expires_at = ?2, started_at = COALESCE(started_at, ?3),
             -- Started: the deadline to start by gives way to one to finish by.
             timeout_at = CASE WHEN started_at IS NULL THEN ?3 + finish_within
                               ELSE timeout_at END
         WHERE id IN (
             -- Fair across functions: one function served, at random, gives its
             -- oldest due run first (a probe of `flow_runs_due_by_function`), then
             -- the slots left go in due order.
             SELECT id FROM (
                 SELECT * FROM (
                     SELECT (SELECT x.id FROM flow_runs x
                             WHERE x.function_id = (SELECT value FROM ",
        unpaused_sql!("?4"),
        " ORDER BY random() LIMIT 1)
                               AND x.status IN ('queued', 'sleeping', 'waiting', 'blocked')
                               AND x.not_before <= ?3
                               AND (x.timeout_at IS NULL OR x.timeout_at > ?3)
                             ORDER BY x.not_before LIMIT 1) AS id,
                            0 AS pass, 0 AS o)
                 WHERE id IS NOT NULL
                 UNION ALL
                 SELECT * FROM (
                     SELECT id, 1, not_before FROM flow_runs
                     WHERE status IN ('queued', 'sleeping', 'waiting', 'blocked')
                       AND not_before <= ?3
                       AND function_id IN ",
        unpaused_sql!("?4"),
        "
                       -- Past its deadline (timeouts): cancelled, not started.
                       AND (timeout_at IS NULL OR timeout_at > ?3)
                     ORDER BY not_before
                     LIMIT ?5))
             GROUP BY id
             ORDER BY min(pass), min(o)
             LIMIT ?5)
         RETURNING id, function_id, lease_token, lost_count, blocked_count, step_count,
                   event_id"
    ))
    .bind(&**request.owner)
    .bind(micros(later(now, request.lease)))
    .bind(micros(now))
    .bind(functions)
    .bind(i64::try_from(request.max).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let mut claimed = Vec::with_capacity(rows.len());
    if !request.limited.is_empty() && rows.len() < request.max {
        let more = request.max - rows.len();
        claimed.extend(crate::concurrency::claim(conn, request, more, now).await?);
    }
    for row in rows {
        match claimed_run(conn, &row, request.owner).await {
            Ok(run) => claimed.push(run),
            Err(problem) => {
                let id: Option<String> = row.try_get("id").ok();
                tracing::error!(run_id = ?id, error = %problem, "failing a run whose row does not read");
                sqlx::query(
                    "UPDATE flow_runs
                     SET status = 'failed', error = ?, error_kind = 'storage', finished_at = ?,
                         lease_owner = NULL, lease_expires_at = NULL
                     WHERE id = ? AND status = 'running'",
                )
                .bind(flow_core::storable_message(&format!(
                    "flow could not read this run's stored row: {problem}"
                )))
                .bind(micros(now))
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
            }
        }
    }
    Ok(claimed)
}

pub(crate) async fn claimed_run(
    conn: &mut SqliteConnection,
    row: &SqliteRow,
    owner: &Arc<str>,
) -> Result<ClaimedRun, Error> {
    let column = |e: sqlx::Error| Error::Database(e.to_string());
    let event_id: String = row.try_get("event_id").map_err(column)?;
    let event = sqlx::query("SELECT name, data, ts FROM flow_events WHERE id = ?")
        .bind(&event_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?
        .ok_or_else(|| Error::Database(format!("its event {event_id} is not stored")))?;
    let token: i64 = row.try_get("lease_token").map_err(column)?;
    let data: String = event.try_get("data").map_err(column)?;
    Ok(ClaimedRun {
        lease: Lease {
            run_id: RunId(uuid(row.try_get("id").map_err(column)?)?),
            token,
            owner: Arc::clone(owner),
        },
        function_id: row.try_get("function_id").map_err(column)?,
        event: StoredEvent {
            id: EventId(uuid(&event_id)?),
            name: event.try_get("name").map_err(column)?,
            data: parse_json(&data)
                .map_err(|e| Error::Database(format!("column `data` of its event: {e}")))?,
            ts: time(event.try_get("ts").map_err(column)?),
        },
        resumed: token > 1,
        lost_count: row.try_get::<i64, _>("lost_count").map_err(column)? as u32,
        blocked_count: row.try_get::<i64, _>("blocked_count").map_err(column)? as u32,
        step_count: row.try_get::<i64, _>("step_count").map_err(column)? as u32,
        // The load reads the file in this process: no round trip to save.
        checkpoints: None,
        key_problem: None,
    })
}

/// A step's record; an error names the step and what does not read.
fn step_record(row: &SqliteRow) -> Result<StepRecord, Error> {
    let key: String = col(row, "key")?;
    read_step_record(row, key.clone()).map_err(|e| StepRecord::unreadable(&key, e))
}

fn read_step_record(row: &SqliteRow, key: String) -> Result<StepRecord, Error> {
    Ok(StepRecord {
        key,
        position: col::<i64>(row, "position")? as u32,
        kind: col::<&str>(row, "kind")?.parse()?,
        output: col::<Option<&str>>(row, "output")?
            .map(parse_json)
            .transpose()?,
        error: col::<Option<&str>>(row, "error")?
            .map(parse_json)
            .transpose()?,
        attempts: col::<i64>(row, "attempts")? as u32,
        started_at: time(col(row, "started_at")?),
        finished_at: time(col(row, "finished_at")?),
        wake_at: col::<Option<i64>>(row, "wake_at")?.map(time),
    })
}

/// One transition inside the batch's transaction: the fenced run row first; the
/// steps and the failed attempt only if it matched.
/// Stores events with the ids given, each starting a run of every function it
/// triggers, resolving the waits it matches (`woke` says whether any did) and
/// cancelling the runs it cancels (added to `cancelled`), in the caller's
/// transaction: a send's own, or a commit's that carries events.
/// Marks the versions of `functions` as seen now and points each function's
/// catalog entry at the version first seen last among those seen within
/// `VERSION_LIVENESS` (PostgreSQL's migration 14 and `versions.rs` say why; a
/// starting worker, `announcing`, makes a version no one served lately new again).
async fn keep_versions(
    conn: &mut SqliteConnection,
    functions: &[FunctionInfo],
    now: DateTime<Utc>,
    announcing: bool,
) -> Result<(), Error> {
    let live_since = micros(now) - VERSION_LIVENESS.as_micros() as i64;
    for f in functions {
        let (hash, rules) = f.send_rules.version();
        sqlx::query(
            "INSERT INTO flow_function_versions (function_id, hash, send_rules, first_seen, last_seen)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (function_id, hash) DO UPDATE
                 SET first_seen = CASE WHEN ?6 AND last_seen <= ?7
                                       THEN excluded.first_seen ELSE first_seen END,
                     last_seen = max(last_seen, excluded.last_seen)",
        )
        .bind(&f.id)
        .bind(&hash)
        .bind(&rules)
        .bind(micros(now))
        .bind(micros(now))
        .bind(announcing)
        .bind(live_since)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "UPDATE flow_functions
             SET (send_rules, send_rules_hash) = (
                 SELECT send_rules, NULLIF(hash, '') FROM flow_function_versions
                 WHERE function_id = ?1 AND (last_seen > ?2 OR hash = ?3)
                 ORDER BY first_seen DESC, hash LIMIT 1)
             WHERE id = ?1",
        )
        .bind(&f.id)
        .bind(live_since)
        .bind(&hash)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

/// The send-time rules (`if`, `idempotency`, `priority`, `singleton`) of the
/// functions `events` trigger,
/// evaluated: read inside the send's write transaction, so always current.
async fn decide(
    conn: &mut SqliteConnection,
    events: &[NewEvent],
    ids: &[EventId],
    now: DateTime<Utc>,
) -> Result<catalog::Decisions, Error> {
    // Compiled rules are kept across sends (and files) by function and hash.
    static CATALOG: std::sync::LazyLock<CatalogCache> =
        std::sync::LazyLock::new(CatalogCache::default);
    let rows = sqlx::query(
        "SELECT f.id, t.trigger, f.send_rules_hash, f.send_rules FROM flow_functions f
         JOIN flow_function_triggers t ON t.function_id = f.id
         WHERE f.send_rules IS NOT NULL",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    if rows.is_empty() {
        return Ok(catalog::Decisions::default());
    }
    let rows = rows
        .iter()
        .map(|row| {
            let rules: String = col(row, "send_rules")?;
            let rules = serde_json::from_str(&rules).map_err(|e| {
                Error::Database(format!("a function's send_rules do not read: {e}"))
            })?;
            Ok((
                col(row, "id")?,
                col(row, "trigger")?,
                col(row, "send_rules_hash")?,
                rules,
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let catalog = CATALOG.reload(rows);
    Ok(catalog.decide(
        events
            .iter()
            .zip(ids)
            .enumerate()
            .map(|(i, (e, id))| (i, *id, e)),
        now,
    ))
}

/// The active run holding singleton `key` of `function`, if any.
async fn singleton_holder(
    conn: &mut SqliteConnection,
    function: &str,
    key: &str,
) -> Result<Option<RunId>, Error> {
    let holder: Option<String> = sqlx::query_scalar(
        "SELECT s.run_id FROM flow_singletons s
         JOIN flow_runs h ON h.id = s.run_id
         WHERE s.function_id = ? AND s.key = ?
           AND h.status NOT IN ('completed', 'failed', 'cancelled')",
    )
    .bind(function)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?;
    holder.map(|id| uuid(&id).map(RunId)).transpose()
}

/// Makes `run` the holder of singleton `key` of `function`.
async fn take_singleton(
    conn: &mut SqliteConnection,
    function: &str,
    key: &str,
    run: RunId,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO flow_singletons (function_id, key, run_id) VALUES (?, ?, ?)
         ON CONFLICT (function_id, key) DO UPDATE SET run_id = excluded.run_id",
    )
    .bind(function)
    .bind(key)
    .bind(run.0.to_string())
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Cancels `run` with `reason` unless it has ended (a client's cancel, or the run
/// a singleton key's new run superseded); true when it was cancelled.
async fn cancel_run(
    conn: &mut SqliteConnection,
    run: RunId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let done = sqlx::query(
        "UPDATE flow_runs
         SET status = 'cancelled', error = ?2, error_kind = NULL, error_step = NULL,
             finished_at = ?3, lease_owner = NULL, lease_expires_at = NULL
         WHERE id = ?1 AND status NOT IN ('completed', 'failed', 'cancelled', 'skipped')",
    )
    .bind(run.0.to_string())
    .bind(reason)
    .bind(micros(now))
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(done.rows_affected() == 1)
}

/// Claims `key` of `function` for `run` for 24 hours: false when a run claimed
/// it less than 24 hours ago (or earlier in this send).
async fn claim_idempotency_key(
    conn: &mut SqliteConnection,
    function: &str,
    key: &str,
    run: RunId,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let claimed = sqlx::query(
        "INSERT INTO flow_idempotency_keys (function_id, key, run_id, expires_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (function_id, key) DO UPDATE
             SET run_id = excluded.run_id, expires_at = excluded.expires_at
             WHERE flow_idempotency_keys.expires_at <= ?
         RETURNING run_id",
    )
    .bind(function)
    .bind(key)
    .bind(run.0.to_string())
    .bind(micros(now + flow_core::catalog::IDEMPOTENCY_WINDOW))
    .bind(micros(now))
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(claimed.is_some())
}

/// Takes a start of rate-limit key `rate` of `function` at `now` (GCRA); false
/// when the key is at its limit.
async fn take_rate(
    conn: &mut SqliteConnection,
    function: &str,
    rate: &RateKey,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let tat: Option<i64> =
        sqlx::query_scalar("SELECT tat FROM flow_rate_limits WHERE function_id = ? AND key = ?")
            .bind(function)
            .bind(&rate.key)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?;
    let Some(next) = rate.admit(tat.map(time), now) else {
        return Ok(false);
    };
    sqlx::query(
        "INSERT INTO flow_rate_limits (function_id, key, tat) VALUES (?, ?, ?)
         ON CONFLICT (function_id, key) DO UPDATE SET tat = excluded.tat",
    )
    .bind(function)
    .bind(&rate.key)
    .bind(micros(next))
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(true)
}

async fn store_events(
    conn: &mut SqliteConnection,
    events: &[NewEvent],
    ids: &[EventId],
    now: DateTime<Utc>,
    woke: &mut bool,
    cancelled: &mut Vec<RunId>,
) -> Result<SendReceipt, Error> {
    let mut receipt = SendReceipt::default();
    let decided = decide(conn, events, ids, now).await?;
    // The singleton keys whose event (the first, mode skip) this send picked.
    let mut picked_in_send: std::collections::HashSet<(String, String)> = Default::default();
    let mut first_in_batch: HashMap<&str, EventId> = HashMap::new();
    for (event, &id) in events.iter().zip(ids) {
        if let Some(pid) = event.producer_id() {
            if let Some(first) = first_in_batch.get(pid) {
                receipt.event_ids.push(*first);
                receipt.duplicates += 1;
                continue;
            }
            // First write wins for 24 hours.
            let claimed = sqlx::query(
                "INSERT INTO flow_event_ids (producer_id, event_id, expires_at) VALUES (?, ?, ?)
                 ON CONFLICT (producer_id) DO UPDATE
                     SET event_id = excluded.event_id, expires_at = excluded.expires_at
                     WHERE flow_event_ids.expires_at <= ?
                 RETURNING producer_id",
            )
            .bind(pid)
            .bind(id.0.to_string())
            .bind(micros(now + flow_core::store::DEDUPE_WINDOW))
            .bind(micros(now))
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?;
            if claimed.is_none() {
                let earlier: String =
                    sqlx::query_scalar("SELECT event_id FROM flow_event_ids WHERE producer_id = ?")
                        .bind(pid)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(db_error)?;
                let earlier = EventId(uuid(&earlier)?);
                first_in_batch.insert(pid, earlier);
                receipt.event_ids.push(earlier);
                receipt.duplicates += 1;
                continue;
            }
            first_in_batch.insert(pid, id);
        }
        sqlx::query(
            "INSERT INTO flow_events (id, name, data, producer_id, ts, received_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id.0.to_string())
        .bind(event.name())
        .bind(json(event.data()))
        .bind(event.producer_id())
        .bind(micros(event.timestamp().unwrap_or(now)))
        .bind(micros(now))
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        let functions: Vec<String> = sqlx::query_scalar(
            "SELECT function_id FROM flow_function_triggers WHERE trigger = ?
                 ORDER BY function_id",
        )
        .bind(event.name())
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        if functions.is_empty() && !awaited(conn, event.name()).await? {
            receipt.note_unmatched(event.name());
        }
        *woke |=
            crate::waits::resolve(conn, &id.0.to_string(), event.name(), now, cancelled).await?;
        for function in functions {
            let run = RunId(Uuid::now_v7());
            let rules = decided
                .decided
                .iter()
                .find(|d| d.event == id && d.function == function);
            if rules.is_some_and(|d| d.filtered) {
                receipt.skipped.push(Skipped {
                    event: id,
                    function,
                    reason: SkipReason::Filtered,
                });
                continue;
            }
            // A singleton key first: the first event of a key in the send may
            // take it (mode skip, if no run holds it), or the last (mode cancel).
            let mut supersede = None;
            if let Some((key, mode)) = rules.and_then(|d| d.singleton.as_ref()) {
                let in_send = (function.clone(), key.clone());
                let reason = match mode {
                    // The first event of a key is picked whether or not its run
                    // then starts (as the PostgreSQL statement does): the later
                    // events of the key in this send start nothing.
                    SingletonMode::Skip if picked_in_send.contains(&in_send) => {
                        Some(SkipReason::SingletonInSend { key: key.clone() })
                    }
                    SingletonMode::Skip => match singleton_holder(conn, &function, key).await? {
                        Some(active) => Some(SkipReason::Singleton {
                            key: key.clone(),
                            active,
                        }),
                        None => {
                            picked_in_send.insert(in_send);
                            None
                        }
                    },
                    SingletonMode::Cancel => {
                        let last = decided.decided.iter().rev().find(|d| {
                            d.function == function
                                && !d.filtered
                                && d.singleton.as_ref().is_some_and(|(k, _)| k == key)
                        });
                        if last.is_some_and(|d| d.event != id) {
                            Some(SkipReason::SingletonInSend { key: key.clone() })
                        } else {
                            supersede = singleton_holder(conn, &function, key).await?;
                            None
                        }
                    }
                };
                if let Some(reason) = reason {
                    receipt.skipped.push(Skipped {
                        event: id,
                        function,
                        reason,
                    });
                    continue;
                }
            }
            if let Some(key) = rules.and_then(|d| d.key.as_deref())
                && !claim_idempotency_key(conn, &function, key, run, now).await?
            {
                receipt.skipped.push(Skipped {
                    event: id,
                    function,
                    reason: SkipReason::Idempotency {
                        key: key.to_owned(),
                    },
                });
                continue;
            }
            // A rate limit last: only an event that would start a run counts
            // against its key.
            if let Some(rate) = rules.and_then(|d| d.rate.as_ref())
                && !take_rate(conn, &function, rate, now).await?
            {
                sqlx::query(
                    "INSERT INTO flow_runs
                         (id, function_id, event_id, status, not_before, created_at,
                          finished_at, error)
                     VALUES (?1, ?2, ?3, 'skipped', ?4, ?4, ?4, ?5)",
                )
                .bind(run.0.to_string())
                .bind(&function)
                .bind(id.0.to_string())
                .bind(micros(now))
                .bind(rate.reason(&function))
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
                receipt.skipped.push(Skipped {
                    event: id,
                    function,
                    reason: SkipReason::RateLimited {
                        key: rate.key.clone(),
                        run,
                    },
                });
                continue;
            }
            // A grouped event joins its key's group instead of starting a run.
            if let Some(group) = rules.and_then(|d| d.group.as_ref()) {
                let run = crate::groups::join(conn, &function, group, id, now).await?;
                *woke = true;
                receipt.runs.push((id, run));
                continue;
            }
            if let Some((key, _)) = rules.and_then(|d| d.singleton.as_ref()) {
                take_singleton(conn, &function, key, run).await?;
                if let Some(active) = supersede {
                    let reason = format!(
                        "cancelled by event {id}, whose run {run} took singleton key `{key}` \
                         (singleton mode cancel)"
                    );
                    if cancel_run(conn, active, &reason, now).await? {
                        cancelled.push(active);
                    }
                }
            }
            // A priority moves the run's due time: the claim takes runs in due order.
            let priority = rules.and_then(|d| d.priority).unwrap_or(0);
            // An event whose timestamp is in the future delays its runs until then.
            let due = match event.timestamp() {
                Some(ts) if ts > now => ts,
                _ => now - chrono::TimeDelta::seconds(priority),
            };
            sqlx::query(
                "INSERT INTO flow_runs (id, function_id, event_id, status, not_before, created_at)
                 VALUES (?, ?, ?, 'queued', ?, ?)",
            )
            .bind(run.0.to_string())
            .bind(&function)
            .bind(id.0.to_string())
            .bind(micros(due))
            .bind(micros(now))
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
            receipt.runs.push((id, run));
        }
        receipt.unevaluated.extend(
            decided
                .unevaluated
                .iter()
                .filter(|u| u.event == id)
                .cloned(),
        );
        receipt.event_ids.push(id);
    }
    Ok(receipt)
}

/// Whether a wait or a `cancel_on` awaits events named `name`: such an event is
/// not unmatched when it starts no run.
async fn awaited(conn: &mut SqliteConnection, name: &str) -> Result<bool, Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM flow_awaited_fields WHERE name = ?)")
        .bind(name)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)
}

/// Whether a function is triggered by flow's system events: after a write that
/// ended runs, the trigger has then queued its runs, and this process's workers
/// are told at once (others find them at their poll).
async fn system_event_consumers(conn: &mut SqliteConnection) -> Result<bool, Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM flow_functions WHERE trigger IN (?, ?, ?))")
        .bind(FUNCTION_FINISHED)
        .bind(FUNCTION_FAILED)
        .bind(FUNCTION_CANCELLED)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)
}

async fn commit_one(
    conn: &mut SqliteConnection,
    lease: &Lease,
    t: &Transition,
    lease_for: Duration,
    now: DateTime<Utc>,
    woke: &mut bool,
    cancelled: &mut Vec<RunId>,
) -> Result<Committed, Error> {
    let run_id = lease.run_id.0.to_string();
    let update = t.next.run_update();
    let waits = match &t.next {
        Next::Park(park) => park.wake.events.as_slice(),
        _ => &[],
    };
    // When events began to count for a wait the run registers now: read before
    // this transition moves it.
    let wait_since = match waits {
        [] => None,
        _ => sqlx::query_scalar::<_, i64>(
            "SELECT COALESCE(wait_since, created_at) FROM flow_runs WHERE id = ?",
        )
        .bind(&run_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?
        .map(time),
    };
    let (status, failure) = (update.status, update.failure);
    let running = status == RunStatus::Running;
    let finished = status.is_finished();
    // A park of a run marked while it executed (a run it invoked ended,
    // migration 6) makes it due at once.
    let fence = sqlx::query_as::<_, (Option<String>, bool)>(
        "UPDATE flow_runs
         SET status = CASE WHEN ?1 IN ('waiting', 'sleeping', 'queued')
                                AND woken_under = lease_token THEN 'queued' ELSE ?1 END,
             not_before = CASE WHEN ?1 IN ('waiting', 'sleeping', 'queued')
                                    AND woken_under = lease_token THEN ?12
                               ELSE COALESCE(?2, not_before) END,
             lease_owner = CASE WHEN ?3 THEN lease_owner END,
             lease_expires_at = CASE WHEN NOT ?3 THEN NULL WHEN ?16 THEN ?4
                                     ELSE lease_expires_at END,
             lost_count = CASE WHEN ?5 THEN 0 ELSE lost_count END,
             current_step = CASE WHEN ?6 IS NOT NULL THEN ?6 WHEN ?5 THEN NULL ELSE current_step END,
             output = ?7, error = ?8, error_kind = ?9, error_step = ?10,
             finished_at = CASE WHEN ?11 THEN ?12 END,
             blocked_count = CASE WHEN ?1 = 'blocked' THEN blocked_count + 1
                                  WHEN ?5 THEN 0 ELSE blocked_count END,
             step_count = max(step_count, COALESCE(?15, 0)),
             wait_since = CASE WHEN ?1 IN ('waiting', 'sleeping', 'queued')
                                    AND woken_under = lease_token THEN ?12
                               WHEN ?17 IS NOT NULL THEN ?17 WHEN ?5 THEN ?12
                               ELSE wait_since END
         WHERE id = ?13 AND lease_token = ?14 AND status = 'running'
         RETURNING parent_id,
                   concurrency_keys IS NOT NULL AND concurrency_keys <> '[]' AS held_slot",
    )
    .bind(status.as_str())
    .bind(match update.due {
        Due::Unchanged => None,
        Due::Now => Some(micros(now)),
        Due::At(at) => Some(micros(at)),
    })
    .bind(running)
    .bind(micros(later(now, lease_for)))
    .bind(t.is_progress())
    .bind(t.executing.as_deref())
    .bind(update.output.map(json))
    .bind(failure.map(|f| f.message.as_str()))
    .bind(failure.map(|f| f.kind.as_str()))
    .bind(failure.and_then(|f| f.step.as_deref()))
    .bind(finished)
    .bind(micros(now))
    .bind(&run_id)
    .bind(lease.token)
    .bind(t.step_count.map(i64::from))
    .bind(t.extend_lease)
    // A park moves the start of the next wait to its wake time.
    .bind(match (&t.next, update.due) {
        (Next::Park(_), Due::At(at)) => Some(micros(at)),
        _ => None,
    })
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?;
    let Some((parent, held_slot)) = fence else {
        return Ok(Committed::LeaseLost);
    };
    // A run of a limited function that stops executing frees a slot of its keys:
    // workers whose due runs waited for one claim again.
    *woke |= held_slot && !running;
    // An invoked run that ends has woken its parent (the trigger).
    *woke |= finished && parent.is_some();
    if let Next::Park(park) = &t.next {
        *woke |= crate::invoke::start(conn, &run_id, &park.wake.runs, now).await?;
        *woke |=
            crate::signals::register(conn, &run_id, lease.token, &park.wake.signals, now).await?;
    }
    if let Some(since) = wait_since {
        let registered =
            crate::waits::register(conn, &run_id, lease.token, waits, since, now).await?;
        if registered.hit {
            sqlx::query(
                "UPDATE flow_runs SET status = 'queued', not_before = ?2, wait_since = ?2 WHERE id = ?1",
            )
            .bind(&run_id)
            .bind(micros(now))
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
            *woke = true;
        }
    }
    let timed_out: Vec<&str> = t
        .steps
        .iter()
        .filter(|s| {
            matches!(
                s.kind,
                flow_core::StepKind::Wait
                    | flow_core::StepKind::Invoke
                    | flow_core::StepKind::Signal
            )
        })
        .map(|s| s.key.as_str())
        .collect();
    // Timed-out waits (for events and signals) and invokes close here; a run that ends closes its waits
    // itself (a trigger).
    for key in timed_out {
        crate::waits::close(conn, &run_id, key).await?;
    }
    let mut recorded = Vec::new();
    for step in &t.steps {
        let inserted = sqlx::query(
            "INSERT INTO flow_steps
                 (run_id, key, position, kind, output, error, attempts, started_at, finished_at, wake_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (run_id, key) DO NOTHING",
        )
        .bind(&run_id)
        .bind(&step.key)
        .bind(step.position as i64)
        .bind(step.kind.as_str())
        .bind(step.output.as_ref().map(json))
        .bind(step.error.as_ref().map(json))
        .bind(step.attempts as i64)
        .bind(micros(step.started_at))
        .bind(micros(step.finished_at))
        .bind(step.wake_at.map(micros))
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        if inserted.rows_affected() == 0 {
            recorded.push(step.key.clone());
        }
    }
    if let Some(attempt) = &t.failure {
        sqlx::query(
            "INSERT INTO flow_attempts (run_id, key, attempt, error, started_at, finished_at, retry_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (run_id, key, attempt) DO NOTHING",
        )
        .bind(&run_id)
        .bind(&attempt.key)
        .bind(attempt.attempt as i64)
        .bind(json(&attempt.error))
        .bind(micros(attempt.started_at))
        .bind(micros(attempt.finished_at))
        .bind(micros(attempt.retry_at))
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    }
    if recorded.is_empty() {
        // Events ride on the commit that records their step, and only on it.
        if !t.events.is_empty() {
            let events: Vec<NewEvent> = t.events.iter().map(|e| e.event.clone()).collect();
            let ids: Vec<EventId> = t.events.iter().map(|e| e.id).collect();
            let receipt = store_events(conn, &events, &ids, now, woke, cancelled).await?;
            *woke |= !receipt.runs.is_empty();
        }
        Ok(Committed::Written)
    } else {
        Ok(Committed::AlreadyRecorded(recorded))
    }
}

/// A column's value, or an error naming the column: a row that does not decode
/// fails what reads it, never the worker or the client.
fn col<'r, T>(row: &'r SqliteRow, name: &str) -> Result<T, Error>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(name)
        .map_err(|e| Error::Database(format!("column `{name}` does not read: {e}")))
}
