//! Starting invoked runs (migration 8 explains the rest): the runs a batch's
//! parks start are stored, with their events and their parents' waits, in the
//! transaction of the commit that kept those parks.

use sqlx::PgConnection;
use uuid::Uuid;

use flow_core::store::{INVOKE_WAIT, Lease, Next, Transition};
use flow_core::system::FUNCTION_INVOKED;
use flow_core::{Error, Now};

use crate::db_error;

/// Whether a transition parks on an invoke whose run it starts.
pub(crate) fn starts_runs(t: &Transition) -> bool {
    matches!(&t.next, Next::Park(park) if park.wake.runs.iter().any(|r| r.start.is_some()))
}

/// The runs a batch's kept parks start, as the statement's arrays.
#[derive(Default)]
pub(crate) struct Invokes {
    parents: Vec<Uuid>,
    keys: Vec<String>,
    positions: Vec<i32>,
    run_ids: Vec<Uuid>,
    functions: Vec<&'static str>,
    event_ids: Vec<Uuid>,
    datas: Vec<serde_json::Value>,
    expires: Vec<chrono::DateTime<chrono::Utc>>,
}

impl Invokes {
    /// The runs `t` starts, if it parks on invokes that have none yet.
    pub(crate) fn add(&mut self, lease: &Lease, t: &Transition) {
        let Next::Park(park) = &t.next else { return };
        for wait in &park.wake.runs {
            let Some(start) = &wait.start else { continue };
            self.parents.push(lease.run_id.0);
            self.keys.push(wait.key.clone());
            self.positions.push(wait.position as i32);
            self.run_ids.push(start.run_id.0);
            self.functions.push(start.function_id);
            self.event_ids.push(start.event_id.0);
            self.datas.push(start.data.clone());
            self.expires.push(wait.expires_at);
        }
    }

    /// Stores them: each run with its event and its parent's wait, unless that
    /// invoke has its run already (a park repeated after its answer was lost).
    pub(crate) async fn start(self, conn: &mut PgConnection, now: Now) -> Result<(), Error> {
        if self.parents.is_empty() {
            return Ok(());
        }
        sqlx::query(START)
            .bind(&self.parents)
            .bind(&self.keys)
            .bind(&self.positions)
            .bind(&self.run_ids)
            .bind(&self.functions)
            .bind(&self.event_ids)
            .bind(&self.datas)
            .bind(&self.expires)
            .bind(now.at())
            .bind(FUNCTION_INVOKED)
            .bind(INVOKE_WAIT)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

const START: &str = "WITH clock AS (
         SELECT COALESCE($9::timestamptz, now()) AS now
     ), u AS (
         SELECT u.* FROM unnest($1::uuid[], $2::text[], $3::integer[], $4::uuid[], $5::text[],
                                $6::uuid[], $7::jsonb[], $8::timestamptz[])
             AS u(parent_id, key, position, run_id, function_id, event_id, data, expires_at)
         WHERE NOT EXISTS (SELECT 1 FROM flow.waits w
                           WHERE w.run_id = u.parent_id AND w.key = u.key)
           AND NOT EXISTS (SELECT 1 FROM flow.steps s
                           WHERE s.run_id = u.parent_id AND s.key = u.key)
     ), ev AS (
         INSERT INTO flow.events (id, name, data, ts, received_at)
         SELECT u.event_id, $10, u.data, clock.now, clock.now FROM u, clock
     ), runs AS (
         INSERT INTO flow.runs
             (id, function_id, event_id, status, not_before, created_at, parent_id)
         SELECT u.run_id, u.function_id, u.event_id, 'queued', clock.now, clock.now,
                u.parent_id
         FROM u, clock
         RETURNING 1
     ), waits AS (
         INSERT INTO flow.waits
             (run_id, key, token, position, name, field, value, since, expires_at)
         SELECT u.parent_id, u.key, 0, u.position, $11, 'run_id', u.run_id::text, clock.now,
                u.expires_at
         FROM u, clock
     )
     SELECT pg_notify('flow_wakeup', '') WHERE EXISTS (SELECT 1 FROM runs)";
