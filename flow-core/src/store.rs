//! The [`Store`] trait: the engine's operations on durable state, in the engine's
//! words. Every backend implements it; every write for a leased run carries the
//! lease's fencing token and changes nothing when the token is stale.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::Stream;
use serde_json::Value;

use crate::{Error, EventId, NewEvent, RunId, RunStatus, RunView, StepKind, StepView, StoredEvent};

/// A worker's hold on one run. Writes that carry a stale `token` return
/// [`Error::LeaseLost`].
#[derive(Clone, Debug)]
pub struct Lease {
    /// The run.
    pub run_id: RunId,
    /// The fencing token: a counter on the run that each claim increments.
    pub token: i64,
    /// The worker holding it.
    pub owner: Arc<str>,
}

/// A run handed to a worker by [`Store::claim`].
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
}

/// What a worker asks of [`Store::claim`].
#[derive(Clone, Debug)]
pub struct ClaimRequest<'a> {
    /// The claiming worker.
    pub owner: &'a Arc<str>,
    /// Only runs of these functions.
    pub functions: &'a [String],
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

impl Lease {
    /// The result of a fenced write: it changed `rows` rows, and none means the lease
    /// is no longer this worker's (or the run no longer runs).
    pub fn fence(&self, rows: u64) -> Result<(), Error> {
        if rows == 0 {
            Err(Error::LeaseLost(self.run_id))
        } else {
            Ok(())
        }
    }
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
}

/// Why a run stops executing without finishing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Park {
    /// Sleeping until the time (status `sleeping`).
    Sleep(DateTime<Utc>),
    /// Backing off until the time before a retry (status `queued`).
    Retry(DateTime<Utc>),
    /// Handed back, claimable at once (worker shutting down, or its driver gave up).
    Release,
}

impl Park {
    /// The status the run takes and when it is due again.
    pub fn target(self, now: DateTime<Utc>) -> (RunStatus, DateTime<Utc>) {
        match self {
            Park::Sleep(at) => (RunStatus::Sleeping, at),
            Park::Retry(at) => (RunStatus::Queued, at),
            Park::Release => (RunStatus::Queued, now),
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// With the handler's output.
    Completed(Value),
    /// With an error message.
    Failed(String),
}

impl Outcome {
    /// The status, output and error message the run is stored with.
    pub fn parts(&self) -> (RunStatus, Option<&Value>, Option<&str>) {
        match self {
            Outcome::Completed(output) => (RunStatus::Completed, Some(output), None),
            Outcome::Failed(message) => (RunStatus::Failed, None, Some(message.as_str())),
        }
    }
}

/// A function as a worker announces it, so that `send` can create its runs.
#[derive(Clone, Debug)]
pub struct FunctionInfo {
    /// Its id.
    pub id: String,
    /// The event name that triggers it.
    pub trigger: String,
}

/// What [`Store::send`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SendReceipt {
    /// One per event sent, in order: its id, or for a duplicate of an event sent in
    /// the last 24 hours, the id of that earlier event.
    pub event_ids: Vec<EventId>,
    /// The runs created, with the event that created each.
    pub runs: Vec<(EventId, RunId)>,
    /// How many events were duplicates and started nothing.
    pub duplicates: usize,
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

/// Durable state for flow. Implemented by each backend; the engine calls nothing else.
///
/// Every method that compares times takes `now` from the worker's [`Clock`](crate::Clock).
pub trait Store: Clone + Send + Sync + 'static {
    /// Where the data lives, for log lines (a URL with its password redacted).
    fn describe(&self) -> String;

    /// Records the functions a worker serves, so sends create their runs.
    fn register_functions(
        &self,
        functions: &[FunctionInfo],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Stores events and, in the same transaction, creates a queued run for every
    /// function they trigger. Producer ids seen in the last 24 hours are duplicates.
    /// Limits are checked by the caller.
    fn send(
        &self,
        events: Vec<NewEvent>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<SendReceipt, Error>> + Send;

    /// Leases up to `max` due runs of the given functions.
    fn claim(
        &self,
        request: ClaimRequest<'_>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<ClaimedRun>, Error>> + Send;

    /// A resumed run's checkpoints, in one query.
    fn checkpoints(&self, run: RunId) -> impl Future<Output = Result<Checkpoints, Error>> + Send;

    /// Writes checkpoints of any number of runs and extends their leases, in one
    /// statement (one commit for the whole batch). Returns, per checkpoint, whether
    /// it was written: `false` means its lease was lost and nothing of it was kept.
    fn checkpoint(
        &self,
        batch: &[(Lease, StepRecord)],
        lease_for: Duration,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<bool>, Error>> + Send;

    /// Records a failed attempt that will be retried.
    fn record_failure(
        &self,
        lease: &Lease,
        attempt: &FailedAttempt,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Notes which step a run that was lost before is executing now, so that a step
    /// which kills its worker every time can be named when the run gives up.
    fn mark_step(&self, lease: &Lease, key: &str)
    -> impl Future<Output = Result<(), Error>> + Send;

    /// Stops executing a run for now and gives up its lease. Listening workers
    /// learn when it is due ([`Wakeup::At`], or [`Wakeup::Now`] for a release).
    fn park(
        &self,
        lease: &Lease,
        park: Park,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Ends a run.
    fn finish(
        &self,
        lease: &Lease,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Extends every lease `owner` holds; returns the runs it still holds.
    fn renew(
        &self,
        owner: &str,
        lease_for: Duration,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<RunId>, Error>> + Send;

    /// Requeues runs whose lease expired; a run lost `max_lost` times in a row
    /// without a new checkpoint fails instead. Returns how many runs it touched.
    fn recover_expired(
        &self,
        max_lost: u32,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, Error>> + Send;

    /// The earliest time something may become claimable for these functions: a due
    /// time, or another worker's lease expiring.
    fn next_wakeup(
        &self,
        functions: &[String],
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, Error>> + Send;

    /// A stream of hints that work was added.
    fn wakeups(&self) -> impl Future<Output = Result<Wakeups, Error>> + Send;

    /// A run with its steps and failed attempts.
    fn run(&self, id: RunId) -> impl Future<Output = Result<Option<RunView>, Error>> + Send;
}

/// Opening a store from a URL, for `Worker::from_env` and the builders.
pub trait Connect: Store + Sized {
    /// Connects (and migrates) the store at `url`.
    fn connect(url: &str) -> impl Future<Output = Result<Self, Error>> + Send;

    /// The URL to use when DATABASE_URL is not set; `None` makes it required.
    fn default_url() -> Option<String> {
        None
    }
}
