//! What a run is: ids, statuses and views as stored and read back (here), and the
//! state one execution of a run keeps while a worker drives it (`core`), and the
//! handle its writes go through (`writes`).

pub(crate) mod core;
pub(crate) mod writes;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// A run's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub Uuid);

/// An event's id, as stored (the producer's own id, if it gave one, is kept beside it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub Uuid);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a run is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting for a worker; also while backing off before a retry.
    Queued,
    /// Leased by a worker.
    Running,
    /// Parked by `ctx.sleep` until its wake time.
    Sleeping,
    /// Parked until an event arrives.
    Waiting,
    /// Held because its code no longer replays its record (a changed step order, a
    /// recorded output that no longer deserializes, a missing record). The error
    /// says why. It resumes, with nothing lost, once a worker's code replays it:
    /// at once when a worker announces its function (a new deploy), else on a
    /// backoff of up to six hours. An operator can also fail or cancel it
    /// ([`Client::settle_blocked`](crate::Client::settle_blocked)).
    Blocked,
    /// Finished with an output.
    Completed,
    /// Finished with an error.
    Failed,
    /// Stopped before finishing.
    Cancelled,
    /// Never started: the function's `rate_limit` held its key at the limit when
    /// the event was sent. The error says which key and limit.
    Skipped,
}

impl RunStatus {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Sleeping => "sleeping",
            RunStatus::Waiting => "waiting",
            RunStatus::Blocked => "blocked",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Skipped => "skipped",
        }
    }

    /// Whether the run has ended for good.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled | RunStatus::Skipped
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "sleeping" => RunStatus::Sleeping,
            "waiting" => RunStatus::Waiting,
            "blocked" => RunStatus::Blocked,
            "completed" => RunStatus::Completed,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            "skipped" => RunStatus::Skipped,
            other => {
                return Err(crate::Error::Database(format!(
                    "unknown run status `{other}`"
                )));
            }
        })
    }
}

/// What kind of checkpoint a step row holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// A `#[step]` or `ctx.run` body.
    Run,
    /// A `ctx.sleep` / `ctx.sleep_until`.
    Sleep,
    /// A journaled `ctx.now()`.
    Now,
    /// A `ctx.wait_for_event`: its output is the event that resolved it, or null
    /// when it timed out.
    Wait,
    /// A `ctx.send_event`: its output is the ids of the events it sent. (Not
    /// `Send`: an item of that name makes rustc spell the marker trait
    /// `std::marker::Send` in every error of a crate that uses flow.)
    SendEvent,
    /// A `ctx.invoke`: its output is `{run_id, output}` of the run it started, its
    /// error how that run failed, was cancelled, or timed out.
    Invoke,
    /// A `ctx.wait_for_signal`: its output is `{signal, data, ts}` of the signal
    /// that resolved it, or null when it timed out; its error says which run
    /// awaited the signal's name already.
    Signal,
    /// A `ctx.first_of`: its output is `{winner, key}`, the index and key of the
    /// branch that won the race.
    FirstOf,
}

impl StepKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Run => "run",
            StepKind::Sleep => "sleep",
            StepKind::Now => "now",
            StepKind::Wait => "wait",
            StepKind::SendEvent => "send",
            StepKind::Invoke => "invoke",
            StepKind::Signal => "signal",
            StepKind::FirstOf => "first_of",
        }
    }
}

impl FromStr for StepKind {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "run" => StepKind::Run,
            "sleep" => StepKind::Sleep,
            "now" => StepKind::Now,
            "wait" => StepKind::Wait,
            "send" => StepKind::SendEvent,
            "invoke" => StepKind::Invoke,
            "signal" => StepKind::Signal,
            "first_of" => StepKind::FirstOf,
            other => {
                return Err(crate::Error::Database(format!(
                    "unknown step kind `{other}`"
                )));
            }
        })
    }
}

/// A function as workers announced it, read back by
/// [`Client::functions`](crate::Client::functions).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionView {
    /// Its id.
    pub id: String,
    /// The name of the event that triggers it (its first trigger).
    pub trigger: String,
    /// Every event name that triggers it: its trigger first, then the others of
    /// a function with several, by name (`flow/cron.<id>` for its schedules).
    pub triggers: Vec<String>,
    /// Its rules applied when an event is sent (`if`, keys, grouping), as
    /// announced; `None` when it has none.
    pub send_rules: Option<Value>,
    /// When a worker last announced it.
    pub last_seen: DateTime<Utc>,
    /// Since when it is paused ([`Client::pause`](crate::Client::pause)), if it is.
    pub paused_at: Option<DateTime<Utc>>,
}

/// A run as read back by [`Client::run`](crate::Client::run).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunView {
    /// The run's id.
    pub id: RunId,
    /// The id of the function it runs.
    pub function_id: String,
    /// The triggering event.
    pub event_id: EventId,
    /// Where it is.
    pub status: RunStatus,
    /// The handler's output, once completed.
    pub output: Option<Value>,
    /// The error message, once failed.
    pub error: Option<String>,
    /// What kind of failure it was, once failed.
    pub failure_kind: Option<crate::store::FailureKind>,
    /// The step the failure came from, when it came from one.
    pub failure_step: Option<String>,
    /// The last time a worker lost the run's lease (it stopped renewing: it died,
    /// hung or lost the database), if one ever did.
    pub last_lost: Option<LostLease>,
    /// When the event created it.
    pub created_at: DateTime<Utc>,
    /// When a worker first claimed it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it completed or failed.
    pub finished_at: Option<DateTime<Utc>>,
    /// Its checkpoints, in call order.
    pub steps: Vec<StepView>,
    /// Every failed attempt of its steps, oldest first (also those still being
    /// retried); failed attempts of the handler's own code have the step
    /// [`HANDLER_KEY`](crate::store::HANDLER_KEY).
    pub failures: Vec<AttemptView>,
    /// How many times the handler was attempted: one, plus each error or panic of
    /// its own code (outside steps) that was retried.
    pub handler_attempts: u32,
}

/// A lease a worker lost: the run was taken from it when the lease expired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostLease {
    /// The worker that held it.
    pub worker: String,
    /// When the run was recovered from it.
    pub at: DateTime<Utc>,
    /// The step the run was executing, when known (it is noted only for runs that
    /// were lost before, so that a step which kills its worker can be named).
    pub step: Option<String>,
    /// The last step the run had checkpointed before it was lost.
    pub after_step: Option<String>,
}

/// One checkpointed step of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepView {
    /// `id`, or `id:n` for the n-th repeat.
    pub key: String,
    /// Its call-order position in the run.
    pub position: u32,
    /// Step body, sleep or journaled clock read.
    pub kind: StepKind,
    /// The output it returned (absent for a failed step).
    pub output: Option<Value>,
    /// The final error, when its retries ran out or it failed fatally.
    pub error: Option<String>,
    /// How many attempts it took, this one included.
    pub attempts: u32,
    /// When its successful (or final) attempt started.
    pub started_at: DateTime<Utc>,
    /// When that attempt finished.
    pub finished_at: DateTime<Utc>,
    /// For a sleep: when it ends.
    pub wake_at: Option<DateTime<Utc>>,
}

/// A failed attempt of a step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttemptView {
    /// The step's key.
    pub step: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// What went wrong.
    pub error: String,
    /// When the next attempt was due.
    pub retry_at: DateTime<Utc>,
}
