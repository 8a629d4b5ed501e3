//! The store contract, in the engine's words. [`Store`] is what a worker writes
//! and claims; [`ReadStore`] is what clients, the server and the dashboard read.
//! Every write for a leased run carries the lease's fencing token and changes
//! nothing when the token is stale.

mod finish;
mod read;
mod records;
mod transition;

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{Error, NewEvent, Now, RunId};

pub use finish::{FinishWatch, Finishes};
pub use read::{
    EventPage, EventQuery, EventView, MAX_RUN_PAGE, ReadStore, RunPage, RunQuery, RunSummary,
};
pub use records::{
    Checkpoints, ClaimRequest, ClaimedRun, DEDUPE_WINDOW, EVENT_TIME_MARGIN, FailedAttempt,
    FunctionInfo, HANDLER_KEY, Lease, NewSignal, OpenWait, SendReceipt, Settle, SignalReceipt,
    StepRecord, Wakeup, Wakeups, cancel_on_reason, handler_attempts, stored_error_message,
};
pub use transition::{
    Block, Committed, Due, EventWait, Failure, FailureKind, INVOKE_WAIT, NewRun, Next, Outcome,
    OutgoingEvent, Park, ParkReason, RunUpdate, RunWait, SIGNAL_WAIT, SignalHolder, SignalWait,
    Transition, WakeOn, signal_held_error,
};

/// Durable state for flow's engine. Implemented by each backend; the worker calls
/// nothing else.
///
/// Every method that compares times takes `now` from the worker's
/// [`Clock::store_now`](crate::Clock::store_now): [`Now::Database`] in production,
/// where the database's own clock rules, or a test clock's reading.
pub trait Store: Clone + Send + Sync + 'static {
    /// Where the data lives, for log lines (a URL with its password redacted).
    fn describe(&self) -> String;

    /// Records the functions a worker serves, so sends create their runs, and
    /// makes their blocked runs due at once: the worker may be a deploy whose code
    /// replays them.
    fn register_functions(
        &self,
        functions: &[FunctionInfo],
        now: Now,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Marks the versions of `functions` (their send-time rules) as still served
    /// by a live worker, which does so every
    /// [`VERSION_HEARTBEAT`](crate::catalog::VERSION_HEARTBEAT); the catalog
    /// follows, per function, the version first seen last among those seen within
    /// [`VERSION_LIVENESS`](crate::catalog::VERSION_LIVENESS).
    /// [`register_functions`](Store::register_functions) does the same.
    fn keep_announced(
        &self,
        functions: &[FunctionInfo],
        now: Now,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// The timestamp of the event named `name` stored last, if any: where a cron
    /// function's missed ticks begin (its ticks are stored in order).
    fn latest_event(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, Error>> + Send;

    /// Stores events and, in the same transaction, creates a queued run for every
    /// function they trigger. Producer ids seen in the last 24 hours are duplicates.
    /// Limits are checked by the caller.
    fn send(
        &self,
        events: Vec<NewEvent>,
        now: Now,
    ) -> impl Future<Output = Result<SendReceipt, Error>> + Send;

    /// Sends a signal to the run waiting on its name: records it as that wait's
    /// output and wakes the run (a run that is executing is woken at its next
    /// park). With no such run, it keeps the signal for the next run that waits
    /// on the name if asked to ([`NewSignal::buffer`]); otherwise it stores
    /// nothing and returns `None`. A wait past its deadline holds no name. The
    /// name and payload are checked by the caller.
    fn signal(
        &self,
        signal: NewSignal,
        now: Now,
    ) -> impl Future<Output = Result<Option<SignalReceipt>, Error>> + Send;

    /// Leases up to `max` due runs of the given functions. No run is handed to two
    /// claimers, however many claim at once.
    fn claim(
        &self,
        request: ClaimRequest<'_>,
        now: Now,
    ) -> impl Future<Output = Result<Vec<ClaimedRun>, Error>> + Send;

    /// A resumed run's checkpoints and failed-attempt counts, in one query.
    fn load(&self, run: RunId) -> impl Future<Output = Result<Checkpoints, Error>> + Send;

    /// The events of a grouped run (`batch_events`, `debounce`), in the order
    /// they joined it; empty for a run that is not a group. Read after the claim:
    /// a send that joined an event to the run committed before the claim could
    /// lease it ([`crate::grouping`]).
    fn group_events(
        &self,
        run: RunId,
    ) -> impl Future<Output = Result<Vec<crate::StoredEvent>, Error>> + Send;

    /// Writes transitions of any number of runs in one statement or transaction (one
    /// commit for the whole batch), each fenced by its lease. Returns, per
    /// transition and in order, what was written: a transition whose lease is lost
    /// changes nothing and does not stop the others. `lease_for` extends the lease
    /// of runs that go on. An error means nothing of the batch was written.
    fn commit(
        &self,
        batch: &[(Lease, Transition)],
        lease_for: Duration,
        now: Now,
    ) -> impl Future<Output = Result<Vec<Committed>, Error>> + Send;

    /// [`Store::commit`] and, in the same round trip and commit, [`Store::claim`]:
    /// a busy worker fills the slots its finished runs freed without a statement
    /// (and a WAL flush) of its own. Whether the claim sees what the batch itself
    /// made due (a hand-back, a park due at once) is the backend's choice: either
    /// is correct, since a claim starts a new execution. An error means nothing
    /// was written and nothing claimed. The default runs the two one after the
    /// other (a failed claim then claims nothing); a backend that can do both at
    /// once overrides it.
    fn commit_and_claim(
        &self,
        batch: &[(Lease, Transition)],
        claim: ClaimRequest<'_>,
        lease_for: Duration,
        now: Now,
    ) -> impl Future<Output = Result<(Vec<Committed>, Vec<ClaimedRun>), Error>> + Send {
        async move {
            let committed = self.commit(batch, lease_for, now).await?;
            let claimed = self.claim(claim, now).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "a claim after a commit failed; claiming later");
                Vec::new()
            });
            Ok((committed, claimed))
        }
    }

    /// Extends exactly these leases, each only if it is still current and has not
    /// expired; returns the runs whose lease was extended.
    fn renew(
        &self,
        leases: &[Lease],
        lease_for: Duration,
        now: Now,
    ) -> impl Future<Output = Result<Vec<RunId>, Error>> + Send;

    /// Requeues runs whose lease expired; a run lost `max_lost` times in a row
    /// without a new checkpoint fails instead. Returns how many runs it touched.
    fn recover_expired(
        &self,
        max_lost: u32,
        now: Now,
    ) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Cancels every run past its deadline (`timeouts`): one not started within its
    /// function's start timeout of its creation, or not finished within its finish
    /// timeout of its start, each with the reason [`Timeouts::reason`] gives
    /// (announced to its watchers, as [`Store::cancel`] is). A backend may cancel
    /// them in batches (PostgreSQL: 1,000 a call; the rest at the next call, while
    /// no claim takes them). Returns how many it cancelled.
    ///
    /// [`Timeouts::reason`]: crate::Timeouts::reason
    fn cancel_timed_out(&self, now: Now) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Cancels a run that has not ended, whatever it is doing: queued, sleeping,
    /// blocked or running (its worker's next write or renewal is then refused, so
    /// no step starts after this commits; a step body in flight runs to its end,
    /// and its checkpoint is not kept). Announced to the run's watchers. `false`
    /// when the run does not exist or has ended.
    fn cancel(
        &self,
        run: RunId,
        reason: &str,
        now: Now,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Starts a new run of an ended run's function with the same event (the same
    /// events, for a batch or debounce run), due now; no send-time rule applies,
    /// as for an invoked run. Errors: [`Error::RunNotFound`], [`Error::NotEnded`],
    /// and [`Error::FunctionNotFound`] when no worker announces its function.
    fn rerun(&self, run: RunId, now: Now) -> impl Future<Output = Result<RunId, Error>> + Send;

    /// [`Store::cancel`] for every run of `function` created in `created` (its
    /// start included, its end not) that has not ended, in one statement; returns
    /// how many it cancelled.
    fn cancel_runs(
        &self,
        function: &str,
        created: std::ops::Range<DateTime<Utc>>,
        reason: &str,
        now: Now,
    ) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Pauses (`paused`) or resumes `function`. While it is paused no claim takes
    /// its runs: sends still create them, and sleeps, waits and retries still make
    /// them due, but they are held (`queued`, or as they parked), and idle workers
    /// leave them out of their next due time. Runs executing when it is paused go
    /// on to their next park or end. A resume makes the held runs claimable in
    /// their order, and tells the workers. `false` when no worker has announced
    /// the function.
    fn set_paused(
        &self,
        function: &str,
        paused: bool,
        now: Now,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Ends a blocked run by an operator's decision; `false` when the run is not
    /// blocked (it never was, or a worker has resumed it meanwhile).
    fn settle_blocked(
        &self,
        run: RunId,
        settle: &Settle,
        now: Now,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// The earliest time something may become claimable for these functions: a due
    /// time, another worker's lease expiring, or any run's timeout. A run of a
    /// `limited` function whose keys are full is left out: the run that frees its
    /// slot tells the workers (a notification) when it stops executing.
    fn next_wakeup(
        &self,
        functions: &[String],
        limited: &crate::flow_control::Limited,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, Error>> + Send;

    /// The database's clock, which [`Now::Database`] compares against; a worker
    /// corrects its own readings by it.
    fn database_time(&self) -> impl Future<Output = Result<DateTime<Utc>, Error>> + Send;

    /// The same database on connections of its own, opened on the runtime that
    /// awaits this: a worker renews its leases with it on a thread of its own, where
    /// step bodies that block their runtime's threads cannot delay renewals. The
    /// default is a clone, for stores whose connections work from any runtime.
    fn detached(&self) -> impl Future<Output = Result<Self, Error>> + Send {
        std::future::ready(Ok(self.clone()))
    }

    /// A stream of hints that work was added.
    fn wakeups(&self) -> impl Future<Output = Result<Wakeups, Error>> + Send;
}

/// Opening a store from a URL, for `Worker::from_env` and the builders.
pub trait Connect: Store + ReadStore + Sized {
    /// Connects (and migrates) the store at `url`.
    fn connect(url: &str) -> impl Future<Output = Result<Self, Error>> + Send;

    /// The URL to use when DATABASE_URL is not set; `None` makes it required.
    fn default_url() -> Option<String> {
        None
    }
}
