//! The records the engine and a store exchange: leases, claimed runs, checkpoints,
//! failed attempts, receipts and wake-up hints.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::Stream;
use serde_json::Value;

use crate::{EventId, RunId, StepKind, StepView, StoredEvent};

/// A worker's hold on one run. A transition that carries a stale `token` changes
/// nothing and is answered [`Committed::LeaseLost`](super::Committed::LeaseLost).
#[derive(Clone, Debug)]
pub struct Lease {
    /// The run.
    pub run_id: RunId,
    /// The fencing token: a counter on the run that each claim increments.
    pub token: i64,
    /// The worker holding it.
    pub owner: Arc<str>,
}

/// A run handed to a worker by [`Store::claim`](super::Store::claim).
#[derive(Clone, Debug)]
pub struct ClaimedRun {
    /// The lease the worker now holds.
    pub lease: Lease,
    /// The function to run.
    pub function_id: String,
    /// The event that triggered it.
    pub event: StoredEvent,
    /// False on the run's first claim: it has no checkpoints, so none are loaded.
    pub resumed: bool,
    /// How many workers in a row lost this run without a new checkpoint.
    pub lost_count: u32,
    /// How many times in a row it was blocked without a new checkpoint.
    pub blocked_count: u32,
    /// How many step records it is known to have ([`Transition::step_count`](super::Transition::step_count)).
    pub step_count: u32,
    /// A resumed run's checkpoints, when the claim read them already (saving the
    /// worker a [`Store::load`](super::Store::load)); `None` makes the worker load
    /// them. A backend returns them only when they are complete: records
    /// committed between its read and its claim would otherwise be missed.
    pub checkpoints: Option<Checkpoints>,
    /// Why its concurrency keys could not be evaluated on its event (a field the
    /// key names is missing): the run was claimed without a slot, and the worker
    /// fails it with this reason at once.
    pub key_problem: Option<String>,
}

/// What a worker asks of [`Store::claim`](super::Store::claim).
#[derive(Clone, Debug)]
pub struct ClaimRequest<'a> {
    /// The claiming worker.
    pub owner: &'a Arc<str>,
    /// Only runs of these functions, taken without counting.
    pub functions: &'a [String],
    /// And runs of these functions, each only while its concurrency keys have room
    /// ([`crate::flow_control`]).
    pub limited: &'a crate::flow_control::Limited,
    /// At most this many runs.
    pub max: usize,
    /// The lease length.
    pub lease: Duration,
}

/// One checkpoint: a step's result, written in one statement.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    /// `id` or `id:n`.
    pub key: String,
    /// Call-order position in the run.
    pub position: u32,
    /// What kind of step.
    pub kind: StepKind,
    /// The output, when it succeeded (or the clock reading of `ctx.now()`).
    pub output: Option<Value>,
    /// The final error (a serialized `StepError`), when it failed for good.
    pub error: Option<Value>,
    /// Attempts it took, this one included.
    pub attempts: u32,
    /// When the attempt started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// For a sleep: when it ends.
    pub wake_at: Option<DateTime<Utc>>,
}

impl StepRecord {
    /// The error for a stored record of step `key` that does not read, naming the
    /// step beside what does not read (a store's column error).
    pub fn unreadable(key: &str, error: crate::Error) -> crate::Error {
        let detail = match error {
            crate::Error::Database(message) => message,
            other => other.to_string(),
        };
        crate::Error::Database(format!(
            "the record of step `{key}` does not read: {detail}"
        ))
    }

    /// The record as [`Client::run`](crate::Client::run) shows it.
    pub fn into_view(self) -> StepView {
        StepView {
            key: self.key,
            position: self.position,
            kind: self.kind,
            output: self.output,
            error: self.error.as_ref().map(stored_error_message),
            attempts: self.attempts,
            started_at: self.started_at,
            finished_at: self.finished_at,
            wake_at: self.wake_at,
        }
    }
}

/// The message of a stored (serialized) `StepError`, or the JSON itself if it is not one.
pub fn stored_error_message(error: &Value) -> String {
    serde_json::from_value::<crate::StepError>(error.clone())
        .map(|e| e.message().to_owned())
        .unwrap_or_else(|_| error.to_string())
}

/// A failed attempt that will be retried.
#[derive(Clone, Debug, PartialEq)]
pub struct FailedAttempt {
    /// The step's key.
    pub key: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The serialized `StepError`.
    pub error: Value,
    /// When the attempt started.
    pub started_at: DateTime<Utc>,
    /// When it failed.
    pub finished_at: DateTime<Utc>,
    /// When the next attempt is due.
    pub retry_at: DateTime<Utc>,
}

/// The key under which failed attempts of the handler's own code (outside any
/// step) are recorded beside the steps' ones; no step id can take it (`:` is
/// refused in step ids).
pub const HANDLER_KEY: &str = ":handler";

/// How many times a run's handler was attempted: one, plus its failed attempts.
pub fn handler_attempts(failures: &[crate::AttemptView]) -> u32 {
    1 + failures.iter().filter(|f| f.step == HANDLER_KEY).count() as u32
}

/// How long a producer-supplied event id deduplicates.
pub const DEDUPE_WINDOW: chrono::Duration = chrono::Duration::hours(24);

/// What a run's checkpoints hold, loaded once when it resumes.
#[derive(Clone, Debug, Default)]
pub struct Checkpoints {
    /// Completed steps.
    pub steps: Vec<StepRecord>,
    /// Failed attempts per step key not yet completed (and those that completed).
    pub failed_attempts: Vec<(String, u32)>,
    /// Waits for events the run registered and that are still open.
    pub waits: Vec<OpenWait>,
}

/// How much earlier than a wait's start an event's time may be and the event
/// still count for it. An event's time is taken when its send statement stores
/// it, a little before that commits; a wait starts at the run's last
/// checkpoint. An event a run already received by an earlier wait never counts
/// again, so the margin only widens the window, never returns one event twice.
pub const EVENT_TIME_MARGIN: Duration = Duration::from_secs(1);

/// A wait for an event that a run registered when it parked and that nothing has
/// resolved yet ([`Checkpoints::waits`]): a replay that reaches it again waits on
/// with the same deadline, or times out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenWait {
    /// The wait step's key.
    pub key: String,
    /// When it times out.
    pub expires_at: DateTime<Utc>,
}

/// A function as a worker announces it, so that `send` can create its runs.
#[derive(Clone, Debug)]
pub struct FunctionInfo {
    /// Its id.
    pub id: String,
    /// The event name that triggers it (its first trigger).
    pub trigger: String,
    /// The names of its other triggers (a function with several).
    pub more_triggers: Vec<String>,
    /// For an `on_failure` handler (trigger `flow/function.failed`): the function
    /// whose failures alone start it.
    pub failures_of: Option<String>,
    /// The events that cancel its runs (`cancel_on`).
    pub cancel_on: Vec<crate::CancelOn>,
    /// How long its runs may wait to start and then to finish.
    pub timeouts: crate::Timeouts,
    /// The rules that apply when its events are sent.
    pub send_rules: crate::catalog::SendRules,
}

impl FunctionInfo {
    /// A function triggered by `trigger` (not an `on_failure` handler).
    pub fn new(id: impl Into<String>, trigger: impl Into<String>) -> Self {
        FunctionInfo {
            id: id.into(),
            trigger: trigger.into(),
            more_triggers: Vec::new(),
            failures_of: None,
            cancel_on: Vec::new(),
            timeouts: crate::Timeouts::NONE,
            send_rules: crate::catalog::SendRules::default(),
        }
    }
}

/// The reason a run cancelled by an event (`cancel_on`) ends with. The backends'
/// SQL writes the same text where the database cancels a run by itself.
pub fn cancel_on_reason(name: &str, event_id: &str, field: &str) -> String {
    format!(
        "cancelled by event `{name}` ({event_id}): its `{field}` matches this run's (cancel_on)"
    )
}

/// A signal for [`Store::signal`](super::Store::signal), checked by the client.
#[derive(Clone, Debug, PartialEq)]
pub struct NewSignal {
    /// The name a run waits on.
    pub name: String,
    /// The payload, which the wait returns.
    pub data: serde_json::Value,
    /// Whether to keep it for the next run that waits on the name when no run
    /// waits on it now.
    pub buffer: bool,
}

/// Where a signal went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignalReceipt {
    /// To this run: its wait returns the signal, and it was woken.
    Delivered(RunId),
    /// Into the buffer: the next run to wait on the name takes it (signals
    /// buffered under one name are taken oldest first).
    Buffered,
}

/// What [`Store::send`](super::Store::send) did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SendReceipt {
    /// One per event sent, in order: its id, or for a duplicate of an event sent in
    /// the last 24 hours, the id of that earlier event.
    pub event_ids: Vec<EventId>,
    /// The runs created, with the event that created each.
    pub runs: Vec<(EventId, RunId)>,
    /// How many events were duplicates and started nothing.
    pub duplicates: usize,
    /// The names of events stored that started no run, because no worker has
    /// announced a function they trigger (yet: a producer started before its
    /// workers learns it here), and that no wait or `cancel_on` awaits, each
    /// once, in the order sent.
    pub unmatched: Vec<String>,
    /// The runs that events did not start because of a function's rules
    /// (`idempotency`), with the reason, in the order sent.
    pub skipped: Vec<crate::catalog::Skipped>,
    /// The rules that could not be applied to an event (an expression that did not
    /// evaluate on its data): those runs started as if without them.
    pub unevaluated: Vec<crate::catalog::Unevaluated>,
}

impl SendReceipt {
    /// Notes `name` as an event name that started no run (once).
    pub fn note_unmatched(&mut self, name: &str) {
        if !self.unmatched.iter().any(|n| n == name) {
            self.unmatched.push(name.to_owned());
        }
    }
}

/// A hint that work may be claimable. Hints only: a worker also polls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wakeup {
    /// Runs were added or handed back: claim now.
    Now,
    /// A run was parked until this time (by any worker): wake then.
    At(DateTime<Utc>),
}

/// The stream of [`Wakeup`]s a worker listens to.
pub type Wakeups = Pin<Box<dyn Stream<Item = Wakeup> + Send>>;

/// An operator's decision about a blocked run ([`Store::settle_blocked`](super::Store::settle_blocked)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settle {
    /// It fails (kind `replay`), with this reason beside the replay error.
    Fail(String),
    /// It is cancelled, with this reason.
    Cancel(String),
}

impl Settle {
    /// The status the run ends with.
    pub fn status(&self) -> crate::RunStatus {
        match self {
            Settle::Fail(_) => crate::RunStatus::Failed,
            Settle::Cancel(_) => crate::RunStatus::Cancelled,
        }
    }

    /// The message stored on the run; the store appends the error it was blocked
    /// with, as ` (blocked by: …)`.
    pub fn message(&self) -> String {
        let (verb, reason) = match self {
            Settle::Fail(reason) => ("failed", reason),
            Settle::Cancel(reason) => ("cancelled", reason),
        };
        crate::storable_message(&format!("{verb} by an operator while blocked: {reason}"))
    }

    /// The failure kind stored: the replay error's for a failed run, none for a
    /// cancelled one.
    pub fn kind(&self) -> Option<super::FailureKind> {
        match self {
            Settle::Fail(_) => Some(super::FailureKind::Replay),
            Settle::Cancel(_) => None,
        }
    }
}
