//! [`Store`] for PostgreSQL. Every write for a leased run is fenced: it matches
//! the run's id, its current lease token and status `running`, and a write that
//! matches nothing is [`Error::LeaseLost`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::{PgListener, PgRow};

use flow_core::store::{
    Checkpoints, ClaimRequest, ClaimedRun, Connect, FailedAttempt, FunctionInfo, Lease, Outcome,
    Park, SendReceipt, StepRecord, Store, Wakeup, Wakeups, stored_error_message,
};
use flow_core::{AttemptView, Error, EventId, NewEvent, RunId, RunView, StoredEvent};

use crate::{PgStore, WAKEUP_CHANNEL, db_error, send::send_on};

fn expiry(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    flow_core::later(now, lease)
}

impl Store for PgStore {
    fn describe(&self) -> String {
        self.described.to_string()
    }

    async fn register_functions(
        &self,
        functions: &[FunctionInfo],
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let ids: Vec<&str> = functions.iter().map(|f| f.id.as_str()).collect();
        let triggers: Vec<&str> = functions.iter().map(|f| f.trigger.as_str()).collect();
        sqlx::query(
            "INSERT INTO flow.functions (id, trigger, last_seen)
             SELECT * , $3::timestamptz FROM unnest($1::text[], $2::text[])
             ON CONFLICT (id) DO UPDATE SET trigger = EXCLUDED.trigger, last_seen = EXCLUDED.last_seen",
        )
        .bind(&ids)
        .bind(&triggers)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn send(&self, events: Vec<NewEvent>, now: DateTime<Utc>) -> Result<SendReceipt, Error> {
        if events.iter().any(|e| e.producer_id().is_some()) {
            // The dedupe claim and the events must commit together.
            let mut tx = self.pool.begin().await.map_err(db_error)?;
            let receipt = send_on(&mut tx, events, now).await?;
            tx.commit().await.map_err(db_error)?;
            Ok(receipt)
        } else {
            // One statement, atomic on its own.
            let mut conn = self.pool.acquire().await.map_err(db_error)?;
            send_on(&mut conn, events, now).await
        }
    }

    async fn claim(
        &self,
        request: ClaimRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedRun>, Error> {
        let rows = sqlx::query(
            "WITH due AS (
                 SELECT id FROM flow.runs
                 WHERE status IN ('queued', 'sleeping') AND not_before <= $1 AND function_id = ANY($2)
                 ORDER BY not_before
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE flow.runs r
             SET status = 'running', lease_owner = $4, lease_token = r.lease_token + 1,
                 lease_expires_at = $5, started_at = COALESCE(r.started_at, $1)
             FROM due, flow.events e
             WHERE r.id = due.id AND e.id = r.event_id
             RETURNING r.id, r.function_id, r.lease_token, r.lost_count, e.id AS event_id, e.name,
                       e.data, e.ts",
        )
        .bind(now)
        .bind(request.functions)
        .bind(i64::try_from(request.max).unwrap_or(i64::MAX))
        .bind(&**request.owner)
        .bind(expiry(now, request.lease))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let token: i64 = row.get("lease_token");
                ClaimedRun {
                    lease: Lease {
                        run_id: RunId(row.get("id")),
                        token,
                        owner: Arc::clone(request.owner),
                    },
                    function_id: row.get("function_id"),
                    event: StoredEvent {
                        id: EventId(row.get("event_id")),
                        name: row.get("name"),
                        data: row.get("data"),
                        ts: row.get("ts"),
                    },
                    resumed: token > 1,
                    lost_count: row.get::<i32, _>("lost_count") as u32,
                }
            })
            .collect())
    }

    async fn checkpoints(&self, run: RunId) -> Result<Checkpoints, Error> {
        let rows = sqlx::query(
            "SELECT key, position, kind, output, error, attempts, started_at, finished_at, wake_at,
                    NULL::integer AS failed
             FROM flow.steps WHERE run_id = $1
             UNION ALL
             SELECT key, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, max(attempt)
             FROM flow.attempts WHERE run_id = $1 GROUP BY key",
        )
        .bind(run.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut checkpoints = Checkpoints::default();
        for row in rows {
            match row.get::<Option<i32>, _>("failed") {
                Some(failed) => checkpoints
                    .failed_attempts
                    .push((row.get("key"), failed as u32)),
                None => checkpoints.steps.push(step_record(&row)?),
            }
        }
        Ok(checkpoints)
    }

    async fn checkpoint(
        &self,
        batch: &[(Lease, StepRecord)],
        lease_for: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, Error> {
        let n = batch.len();
        let (mut runs, mut tokens, mut keys, mut positions, mut kinds) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut outputs, mut errors, mut attempts, mut started, mut finished, mut wakes) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (lease, step) in batch {
            runs.push(lease.run_id.0);
            tokens.push(lease.token);
            keys.push(step.key.as_str());
            positions.push(step.position as i32);
            kinds.push(step.kind.as_str());
            outputs.push(step.output.clone());
            errors.push(step.error.clone());
            attempts.push(step.attempts as i32);
            started.push(step.started_at);
            finished.push(step.finished_at);
            wakes.push(step.wake_at);
        }
        // The results, the lease extensions and the fences in one statement, so a
        // batch of checkpoints from many runs costs one commit. Each run row's UPDATE
        // waits for a concurrent claim and then sees its new token; a checkpoint whose
        // run row was not updated is not inserted.
        let rows = sqlx::query(
            "WITH input AS (
                 SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::integer[], $5::text[],
                                      $6::jsonb[], $7::jsonb[], $8::integer[], $9::timestamptz[],
                                      $10::timestamptz[], $11::timestamptz[])
                     AS i(run_id, token, key, position, kind, output, error, attempts, started_at,
                          finished_at, wake_at)
             ), leased AS (
                 UPDATE flow.runs r SET lease_expires_at = $12, lost_count = 0, current_step = NULL
                 FROM input i
                 WHERE r.id = i.run_id AND r.lease_token = i.token AND r.status = 'running'
                 RETURNING r.id, r.lease_token
             )
             INSERT INTO flow.steps
                 (run_id, key, position, kind, output, error, attempts, started_at, finished_at, wake_at)
             SELECT i.run_id, i.key, i.position, i.kind, i.output, i.error, i.attempts, i.started_at,
                    i.finished_at, i.wake_at
             FROM input i JOIN leased l ON l.id = i.run_id AND l.lease_token = i.token
             RETURNING run_id, key",
        )
        .bind(&runs)
        .bind(&tokens)
        .bind(&keys)
        .bind(&positions)
        .bind(&kinds)
        .bind(&outputs)
        .bind(&errors)
        .bind(&attempts)
        .bind(&started)
        .bind(&finished)
        .bind(&wakes)
        .bind(expiry(now, lease_for))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let written: std::collections::HashSet<(uuid::Uuid, String)> = rows
            .iter()
            .map(|r| (r.get::<uuid::Uuid, _>(0), r.get::<String, _>(1)))
            .collect();
        Ok(batch
            .iter()
            .map(|(lease, step)| written.contains(&(lease.run_id.0, step.key.clone())))
            .collect())
    }

    async fn record_failure(&self, lease: &Lease, attempt: &FailedAttempt) -> Result<(), Error> {
        let result = sqlx::query(
            "WITH lease AS (
                 UPDATE flow.runs SET lost_count = 0, current_step = NULL
                 WHERE id = $1 AND lease_token = $2 AND status = 'running'
                 RETURNING id
             )
             INSERT INTO flow.attempts (run_id, key, attempt, error, started_at, finished_at, retry_at)
             SELECT id, $3, $4, $5, $6, $7, $8 FROM lease",
        )
        .bind(lease.run_id.0)
        .bind(lease.token)
        .bind(&attempt.key)
        .bind(attempt.attempt as i32)
        .bind(&attempt.error)
        .bind(attempt.started_at)
        .bind(attempt.finished_at)
        .bind(attempt.retry_at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        lease.fence(result.rows_affected())
    }

    async fn mark_step(&self, lease: &Lease, key: &str) -> Result<(), Error> {
        let result = sqlx::query(
            "UPDATE flow.runs SET current_step = $3
             WHERE id = $1 AND lease_token = $2 AND status = 'running'",
        )
        .bind(lease.run_id.0)
        .bind(lease.token)
        .bind(key)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        lease.fence(result.rows_affected())
    }

    async fn park(&self, lease: &Lease, park: Park, now: DateTime<Utc>) -> Result<(), Error> {
        let (status, at) = park.target(now);
        // Every listening worker learns the due time from the notification, so the
        // run wakes on time even if this worker stops before then.
        let payload = match park {
            Park::Release => String::new(),
            _ => at.timestamp_micros().to_string(),
        };
        let result = sqlx::query(
            "WITH parked AS (
                 UPDATE flow.runs
                 SET status = $3, not_before = $4, lease_owner = NULL, lease_expires_at = NULL
                 WHERE id = $1 AND lease_token = $2 AND status = 'running'
                 RETURNING id
             )
             SELECT pg_notify('flow_wakeup', $5) FROM parked",
        )
        .bind(lease.run_id.0)
        .bind(lease.token)
        .bind(status.as_str())
        .bind(at)
        .bind(payload)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        lease.fence(result.len() as u64)
    }

    async fn finish(
        &self,
        lease: &Lease,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let (status, output, error) = outcome.parts();
        let result = sqlx::query(
            "UPDATE flow.runs
             SET status = $3, output = $4, error = $5, finished_at = $6,
                 lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1 AND lease_token = $2 AND status = 'running'",
        )
        .bind(lease.run_id.0)
        .bind(lease.token)
        .bind(status.as_str())
        .bind(output)
        .bind(error)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        lease.fence(result.rows_affected())
    }

    async fn renew(
        &self,
        owner: &str,
        lease_for: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<RunId>, Error> {
        let rows = sqlx::query(
            "UPDATE flow.runs SET lease_expires_at = $2
             WHERE lease_owner = $1 AND status = 'running'
             RETURNING id",
        )
        .bind(owner)
        .bind(expiry(now, lease_for))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.iter().map(|r| RunId(r.get(0))).collect())
    }

    async fn recover_expired(&self, max_lost: u32, now: DateTime<Utc>) -> Result<u64, Error> {
        let rows = sqlx::query(
            "WITH expired AS (
                 SELECT id FROM flow.runs
                 WHERE status = 'running' AND lease_expires_at < $1
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE flow.runs r
             SET lost_count = r.lost_count + 1,
                 status = CASE WHEN r.lost_count + 1 >= $2 THEN 'failed' ELSE 'queued' END,
                 error = CASE WHEN r.lost_count + 1 >= $2 THEN
                     format('its worker was lost %s times in a row without a new checkpoint, '
                            'the last time in %s; a step that kills its worker is not retried forever',
                            r.lost_count + 1,
                            COALESCE('step `' || r.current_step || '`', 'the code before its next step'))
                     END,
                 finished_at = CASE WHEN r.lost_count + 1 >= $2 THEN $1 END,
                 not_before = $1, lease_owner = NULL, lease_expires_at = NULL
             FROM expired
             WHERE r.id = expired.id
             RETURNING r.status",
        )
        .bind(now)
        .bind(max_lost as i32)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        if rows.iter().any(|r| r.get::<&str, _>(0) == "queued") {
            self.notify().await?;
        }
        Ok(rows.len() as u64)
    }

    async fn next_wakeup(&self, functions: &[String]) -> Result<Option<DateTime<Utc>>, Error> {
        let row = sqlx::query(
            "SELECT LEAST(
                 (SELECT min(not_before) FROM flow.runs
                  WHERE status IN ('queued', 'sleeping') AND function_id = ANY($1)),
                 (SELECT min(lease_expires_at) FROM flow.runs WHERE status = 'running'))",
        )
        .bind(functions)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(row.get(0))
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

    async fn run(&self, id: RunId) -> Result<Option<RunView>, Error> {
        let Some(row) = sqlx::query(
            "SELECT id, function_id, event_id, status, output, error, created_at, started_at, finished_at
             FROM flow.runs WHERE id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
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
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| step_record(row).map(StepRecord::into_view))
        .collect::<Result<Vec<_>, _>>()?;
        let failures = sqlx::query(
            "SELECT key, attempt, error, retry_at FROM flow.attempts WHERE run_id = $1
             ORDER BY finished_at, key, attempt",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| AttemptView {
            step: row.get("key"),
            attempt: row.get::<i32, _>("attempt") as u32,
            error: stored_error_message(&row.get::<Value, _>("error")),
            retry_at: row.get("retry_at"),
        })
        .collect();
        Ok(Some(RunView {
            id: RunId(row.get("id")),
            function_id: row.get("function_id"),
            event_id: EventId(row.get("event_id")),
            status: row.get::<&str, _>("status").parse()?,
            output: row.get("output"),
            error: row.get("error"),
            created_at: row.get("created_at"),
            started_at: row.get("started_at"),
            finished_at: row.get("finished_at"),
            steps,
            failures,
        }))
    }
}

impl Connect for PgStore {
    async fn connect(url: &str) -> Result<Self, Error> {
        PgStore::connect(url).await
    }
}

impl PgStore {
    async fn notify(&self) -> Result<(), Error> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(WAKEUP_CHANNEL)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

fn step_record(row: &PgRow) -> Result<StepRecord, Error> {
    Ok(StepRecord {
        key: row.get("key"),
        position: row.get::<i32, _>("position") as u32,
        kind: row.get::<&str, _>("kind").parse()?,
        output: row.get("output"),
        error: row.get("error"),
        attempts: row.get::<i32, _>("attempts") as u32,
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        wake_at: row.get("wake_at"),
    })
}
