//! The state of one execution of a run, shared by its [`Ctx`](crate::Ctx), its step
//! calls and the driver: the memo of checkpoints, the step cursor, the lease and
//! its writer, and what the driver must do next (park, hand back, stop).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use super::writes::{Committer, Unwritten};
use crate::store::{
    Checkpoints, Committed, Failure, FailureKind, Lease, Next, Park, StepRecord, Transition,
};
use crate::{Backoff, Clock, Error, Limits, RunId, StepKind};

tokio::task_local! {
    /// The key of the step whose body is being polled, to refuse nested steps.
    pub(crate) static CURRENT_STEP: String;
}

std::thread_local! {
    /// The run whose handler this thread is polling now (its core's address), set
    /// by the driver for the length of one poll: a step may leave its checkpoint
    /// for the run's next write only when it returns inside that poll, since the
    /// driver then sees the handler wait and writes what is left.
    static POLLING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn current_step() -> Option<String> {
    CURRENT_STEP.try_with(|key| key.clone()).ok()
}

/// Why the driver must stop polling a run's handler before it finishes. Acts at
/// once: a step body still running is dropped and its result not written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Stop {
    /// Another worker owns the run: drop it, write nothing.
    LeaseLost,
    /// The run cannot go on (a limit, a refused write): fail it.
    Fail(Failure),
    /// Its code does not replay its record: hold it as `blocked` until code that
    /// does comes along.
    Block(Failure),
    /// Hand the run back, claimable at once.
    Release,
}

/// What the driver should do with a run it is polling.
pub(crate) enum Decision {
    /// Park it: no step body is running.
    Park(Park),
    /// Hand it back: no step body is running (the worker is shutting down).
    Release,
    /// Stop it now.
    Stop(Stop),
}

/// How a step call resolved when it was made.
pub(crate) enum Resolution {
    /// Checkpointed before: return the record.
    Replay(StepRecord),
    /// Run the body; it failed this many times before.
    Execute { failed_before: u32 },
    /// The run is stopping: never resolve.
    Halt,
}

/// The worker's settings an execution follows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunSettings {
    /// How long each extension of the lease lasts.
    pub lease_for: Duration,
    /// How far ahead a park's wake time is announced to other workers (the
    /// worker's poll interval; see [`Transition::announce_wake`]).
    pub announce_within: Duration,
    pub limits: Limits,
}

pub(crate) struct RunCore {
    pub run_id: RunId,
    pub function_id: &'static str,
    pub retries: u32,
    pub backoff: Backoff,
    pub clock: std::sync::Arc<dyn Clock>,
    pub limits: Limits,
    lease: Lease,
    lease_for: Duration,
    /// How far ahead a park's wake time is announced to other workers (the
    /// worker's poll interval; see [`Transition::announce_wake`]).
    announce_within: Duration,
    /// Until when this execution may go on without a renewal or a commit that goes
    /// on (microseconds of the worker's clock): the lease, less a margin.
    held_until: AtomicI64,
    committer: Committer,
    /// Step records the run is known to have: loaded, plus those this execution
    /// committed (see [`Transition::step_count`]).
    step_count: AtomicU32,
    state: Mutex<RunState>,
    /// Signalled whenever the driver may have something to do.
    pub changed: Notify,
    /// Set once the driver is done with this execution (see [`RunCore::end`]).
    ended: AtomicBool,
    ended_signal: Notify,
}

#[derive(Default)]
struct RunState {
    /// Checkpoints loaded when the run resumed, by key.
    recorded: HashMap<String, StepRecord>,
    /// The same, by call-order position.
    recorded_at: HashMap<u32, String>,
    /// Failed attempts per step key.
    failed: HashMap<String, u32>,
    /// Deadlines of the waits for events the run registered and nothing resolved.
    open_waits: HashMap<String, DateTime<Utc>>,
    /// How many times each step id has been called in this execution.
    repeats: HashMap<String, u32>,
    next_position: u32,
    uuid_calls: u64,
    state_bytes: usize,
    /// Step bodies running now; the driver parks only when this is zero.
    inflight: u32,
    park: Option<Park>,
    release: bool,
    stop: Option<Stop>,
    shutting_down: bool,
    /// The run was lost by earlier workers: name the first step it executes.
    mark_next_step: bool,
    /// Checkpoints of steps that returned while the handler was being polled, not
    /// yet written: they ride on the run's next write (see [`RunCore::defer`]).
    unwritten: Vec<StepRecord>,
    /// The step whose carried checkpoint the database refused, for the failure.
    refused: Option<String>,
}

impl RunCore {
    pub fn new(
        def: &'static crate::FunctionDef,
        lease: Lease,
        claimed_at: DateTime<Utc>,
        settings: RunSettings,
        committer: Committer,
        clock: std::sync::Arc<dyn Clock>,
    ) -> Self {
        let core = RunCore {
            run_id: lease.run_id,
            function_id: def.id,
            retries: def.retries,
            backoff: def.backoff,
            clock,
            limits: settings.limits,
            lease,
            lease_for: settings.lease_for,
            announce_within: settings.announce_within,
            held_until: AtomicI64::new(i64::MIN),
            committer,
            step_count: AtomicU32::new(0),
            state: Mutex::new(RunState::default()),
            changed: Notify::new(),
            ended: AtomicBool::new(false),
            ended_signal: Notify::new(),
        };
        core.lease_extended(claimed_at);
        core
    }

    /// The lease was extended by a statement that began at `from`: this execution
    /// may go on until `from + lease - margin` ([`lease_margin`]).
    pub fn lease_extended(&self, from: DateTime<Utc>) {
        let until = crate::clock::later(from, self.lease_for - lease_margin(self.lease_for));
        self.held_until
            .fetch_max(until.timestamp_micros(), Ordering::SeqCst);
    }

    /// Whether this execution's local lease deadline has passed at `now`: another
    /// worker may take the run over soon, so it must stop.
    pub fn lease_overdue(&self, now: DateTime<Utc>) -> bool {
        now.timestamp_micros() >= self.held_until.load(Ordering::SeqCst)
    }

    /// Whether less than half of the lease is left at `now`: a write that goes on
    /// then extends it (see [`Transition::extend_lease`]).
    fn lease_half_gone(&self, now: DateTime<Utc>) -> bool {
        let half = crate::clock::later(now, self.lease_for / 2);
        half.timestamp_micros() >= self.held_until.load(Ordering::SeqCst)
    }

    fn state(&self) -> MutexGuard<'_, RunState> {
        // A panic while the lock is held cannot leave the state half-written (every
        // critical section is a few assignments), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The lease this execution holds.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Writes a transition of this run through the worker's group commit, with the
    /// checkpoints left for it ([`RunCore::defer`]) in front of its own. One that
    /// goes on extends the lease, and so this execution's deadline.
    pub async fn commit(&self, mut transition: Transition) -> Result<Committed, Error> {
        let unwritten = std::mem::take(&mut self.state().unwritten);
        // Should this write fail, the committer hands the transition back, and
        // these first records are carried again.
        let carried = unwritten.len();
        transition.steps.splice(0..0, unwritten);
        let goes_on = transition.next == Next::Continue;
        // Two commits of this execution in flight at once both count from what was
        // known before either: an undercount, never an overcount.
        let count = (!transition.steps.is_empty())
            .then(|| self.step_count.load(Ordering::SeqCst) + transition.steps.len() as u32);
        transition.step_count = count;
        let before = self.clock.now();
        transition.extend_lease = goes_on && self.lease_half_gone(before);
        transition.announce_wake = transition
            .next
            .wake_at()
            .is_some_and(|at| at <= crate::clock::later(before, self.announce_within));
        let extends = transition.extend_lease;
        let result = match self.committer.commit(self.lease.clone(), transition).await {
            Ok(committed) => Ok(committed),
            Err(Unwritten {
                error,
                transition: Some(mut transition),
            }) if carried > 0 => {
                let carried = transition.steps.drain(..carried).collect();
                self.carried_failed(error, carried).await
            }
            Err(unwritten) => Err(unwritten.error),
        };
        if let Ok(Committed::Written | Committed::AlreadyRecorded(_)) = result {
            if let Some(count) = count {
                self.step_count.fetch_max(count, Ordering::SeqCst);
            }
            if extends {
                self.lease_extended(before);
            }
        }
        result
    }

    /// A write that carried checkpoints failed with `error`. A transient failure
    /// leaves them for the run's next write (a hand-back keeps them). One the
    /// database refused is told apart: the checkpoints are written alone, and if
    /// they are what it refuses, the failure names their step
    /// ([`RunCore::refusal`]); if not, the write's own part was refused.
    async fn carried_failed(
        &self,
        error: Error,
        carried: Vec<StepRecord>,
    ) -> Result<Committed, Error> {
        if error.is_transient() {
            self.carry_again(carried);
            return Err(error);
        }
        let step = carried[0].key.clone();
        let alone = Transition {
            steps: carried,
            ..Transition::CONTINUE
        };
        match self.committer.commit(self.lease.clone(), alone).await {
            Ok(Committed::LeaseLost) => Ok(Committed::LeaseLost),
            Ok(_) => Err(error),
            Err(Unwritten { error, transition }) if error.is_transient() => {
                if let Some(transition) = transition {
                    self.carry_again(transition.steps);
                }
                Err(error)
            }
            Err(unwritten) => {
                self.state().refused = Some(step);
                Err(unwritten.error)
            }
        }
    }

    fn carry_again(&self, mut carried: Vec<StepRecord>) {
        let mut st = self.state();
        carried.append(&mut st.unwritten);
        st.unwritten = carried;
    }

    /// The failure of a run whose write the database refused with `error`: it names
    /// the step whose checkpoint was refused, else `step`, else the run's end.
    pub fn refusal(&self, error: &Error, step: Option<&str>) -> Failure {
        let step = self.state().refused.take().or(step.map(str::to_owned));
        let message = match &step {
            Some(step) => format!("the database refused to store step `{step}`: {error}"),
            None => format!("the database refused to store the run's end: {error}"),
        };
        let failure = Failure::new(FailureKind::Storage, message);
        match step {
            Some(step) => failure.in_step(&step),
            None => failure,
        }
    }

    /// Leaves a step's checkpoint for the run's next write instead of writing it
    /// now, when that is safe; false when the caller must write it itself.
    ///
    /// Safe when the step returns inside the driver's poll of the handler and no
    /// other step body is running: the checkpoint is then written before the next
    /// step body starts, with the run's park or finish, or, if the handler waits
    /// on anything else, as soon as it does ([`RunCore::flush`]). A lone run's last
    /// checkpoint and its finish so share one statement, as do a step's checkpoint
    /// and the next step's start mark or a sleep's record.
    pub fn defer(&self, record: StepRecord) -> Result<(), Box<StepRecord>> {
        let polled = POLLING.with(|p| p.get()) == self as *const RunCore as usize;
        let mut st = self.state();
        if polled && st.inflight == 1 && st.stop.is_none() {
            st.unwritten.push(record);
            Ok(())
        } else {
            Err(Box::new(record))
        }
    }

    /// Whether checkpoints wait for the run's next write.
    pub fn has_unwritten(&self) -> bool {
        !self.state().unwritten.is_empty()
    }

    /// Writes the checkpoints left for the run's next write, if any; false when
    /// they were not kept (the run is stopping).
    pub async fn flush(&self) -> bool {
        let first = self.state().unwritten.first().map(|r| r.key.clone());
        match first {
            Some(step) => self.commit_or_stop(Transition::CONTINUE, &step).await,
            None => true,
        }
    }

    /// Polls `handler` as this run's handler: steps that return inside the poll may
    /// leave their checkpoints for the run's next write ([`RunCore::defer`]).
    pub fn poll_handler<F: std::future::Future + Unpin>(
        &self,
        handler: &mut F,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let me = self as *const RunCore as usize;
        let before = POLLING.with(|p| p.replace(me));
        let polled = std::pin::Pin::new(handler).poll(cx);
        POLLING.with(|p| p.set(before));
        polled
    }

    /// Writes a transition of a run that goes on; when it is not kept, stops the run
    /// (lease lost, refused, database gone) and returns false. `step` names the step
    /// whose write it is.
    pub async fn commit_or_stop(&self, transition: Transition, step: &str) -> bool {
        // Recorded already: a retried write whose first attempt committed. The
        // record stands and is the same value.
        self.commit_kept(transition, step).await.is_some()
    }

    /// [`RunCore::commit_or_stop`], saying how the transition was kept: `None` when
    /// it was not (the run is stopping).
    pub async fn commit_kept(&self, transition: Transition, step: &str) -> Option<Committed> {
        match self.commit(transition).await {
            Ok(kept @ (Committed::Written | Committed::AlreadyRecorded(_))) => Some(kept),
            Ok(Committed::LeaseLost) => {
                tracing::info!(step, "lease lost; dropping the run");
                self.stop(Stop::LeaseLost);
                None
            }
            Err(e) if e.is_transient() => {
                tracing::error!(step, error = %e, "could not write; handing the run back");
                self.stop(Stop::Release);
                None
            }
            Err(e) => {
                tracing::error!(step, error = %e, "the database refused the write; the run fails");
                self.stop(Stop::Fail(self.refusal(&e, Some(step))));
                None
            }
        }
    }

    /// The driver is done with this execution: its handler is dropped and how it
    /// left the worker is written. Step calls still alive (in tasks spawned off the
    /// handler) return an error, and their bodies stop.
    pub fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
        self.ended_signal.notify_waiters();
    }

    fn has_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Resolves once the execution has ended.
    pub async fn until_ended(&self) {
        loop {
            let signal = self.ended_signal.notified();
            tokio::pin!(signal);
            signal.as_mut().enable();
            if self.has_ended() {
                return;
            }
            signal.await;
        }
    }

    /// Fills the memo from a resumed run's checkpoints; `step_count` is how many
    /// the run is known to have. Fewer loaded means rows are missing: the run is
    /// blocked rather than running their steps again.
    pub fn load(&self, checkpoints: Checkpoints, lost_before: bool, step_count: u32) {
        let loaded = checkpoints.steps.len() as u32;
        self.step_count.store(loaded, Ordering::SeqCst);
        if loaded < step_count {
            self.block(
                format!(
                    "{} of the run's {step_count} step records are missing from the store \
                     (were rows deleted or restored from an older backup?); the run is held \
                     so that no completed step runs again",
                    step_count - loaded
                ),
                None,
            );
        }
        let mut st = self.state();
        for (key, failed) in checkpoints.failed_attempts {
            st.failed.insert(key, failed);
        }
        for wait in checkpoints.waits {
            st.open_waits.insert(wait.key, wait.expires_at);
        }
        for step in checkpoints.steps {
            st.state_bytes += step.output.as_ref().map_or(0, json_len);
            st.recorded_at.insert(step.position, step.key.clone());
            st.recorded.insert(step.key.clone(), step);
        }
        st.mark_next_step = lost_before;
    }

    /// Asks the driver to stop the run; the first reason wins.
    pub fn stop(&self, stop: Stop) {
        {
            let mut st = self.state();
            if st.stop.is_none() {
                st.stop = Some(stop);
            }
        }
        self.changed.notify_one();
    }

    /// Holds the run as `blocked`: its code does not replay its record.
    pub fn block(&self, message: String, step: Option<&str>) {
        let mut failure = Failure::new(FailureKind::Replay, message);
        failure.step = step.map(str::to_owned);
        self.stop(Stop::Block(failure));
    }

    /// Fails the run with a failure of `kind`.
    pub fn fail(&self, kind: FailureKind, message: String, step: Option<&str>) {
        let mut failure = Failure::new(kind, message);
        failure.step = step.map(str::to_owned);
        self.stop(Stop::Fail(failure));
    }

    /// Asks the driver to park the run once no step body is running. Several
    /// requests join: the run wakes at the first of their conditions; a sleep that
    /// ends later is parked again on replay.
    pub fn park(&self, park: Park) {
        {
            let mut st = self.state();
            st.park = Some(match st.park.take() {
                None => park,
                Some(old) => old.join(park),
            });
        }
        self.changed.notify_one();
    }

    /// Asks the driver to hand the run back once no step body is running.
    fn release(&self) {
        self.state().release = true;
        self.changed.notify_one();
    }

    /// The worker is shutting down: step bodies already running finish, and the
    /// next step call hands the run back.
    pub fn begin_shutdown(&self) {
        let idle = {
            let mut st = self.state();
            st.shutting_down = true;
            st.inflight == 0
        };
        // A handler idle outside any step (say, awaiting a timer) would never reach
        // its next step call: hand it back now.
        if idle {
            self.release();
        }
        self.changed.notify_one();
    }

    /// What the driver should do now, if anything.
    pub fn decision(&self) -> Option<Decision> {
        let st = self.state();
        if let Some(stop) = &st.stop {
            return Some(Decision::Stop(stop.clone()));
        }
        if st.inflight > 0 {
            return None;
        }
        if st.release {
            return Some(Decision::Release);
        }
        st.park.clone().map(Decision::Park)
    }

    /// Resolves a step call, at call time, against the record.
    pub fn resolve(&self, id: &str, kind: StepKind) -> (String, u32, Resolution) {
        let mut st = self.state();
        let n = st.repeats.entry(id.to_owned()).or_insert(0);
        let key = if *n == 0 {
            id.to_owned()
        } else {
            format!("{id}:{n}")
        };
        *n += 1;
        let position = st.next_position;
        st.next_position += 1;
        if st.stop.is_some() || self.has_ended() {
            return (key, position, Resolution::Halt);
        }
        if let Some(outer) = current_step() {
            drop(st);
            self.fail(
                FailureKind::Usage,
                match kind {
                    StepKind::Sleep => format!(
                        "sleep `{key}` was called inside the body of step `{outer}`; a step \
                         body cannot sleep durably (the run cannot park while a body runs): \
                         call ctx.sleep from the function body between steps, or use \
                         tokio::time::sleep for a short wait inside the step"
                    ),
                    StepKind::Now => format!(
                        "ctx.now() was called inside the body of step `{outer}`; a step body \
                         runs once, so read the clock directly there (chrono::Utc::now()), or \
                         call ctx.now() from the function body"
                    ),
                    StepKind::Wait => format!(
                        "wait `{key}` was called inside the body of step `{outer}`; a step \
                         body cannot wait durably (the run cannot park while a body runs): \
                         call ctx.wait_for_event from the function body between steps"
                    ),
                    StepKind::SendEvent => format!(
                        "send `{key}` was called inside the body of step `{outer}`; a step \
                         body cannot send as a step (its events would be sent again on a \
                         retry): call ctx.send_event from the function body between steps"
                    ),
                    StepKind::Invoke => format!(
                        "invoke `{key}` was called inside the body of step `{outer}`; a step \
                         body cannot wait for another run durably (the run cannot park while \
                         a body runs): call ctx.invoke from the function body between steps"
                    ),
                    StepKind::Signal => format!(
                        "signal wait `{key}` was called inside the body of step `{outer}`; a \
                         step body cannot wait durably (the run cannot park while a body \
                         runs): call ctx.wait_for_signal from the function body between steps"
                    ),
                    StepKind::FirstOf => format!(
                        "race `{key}` was called inside the body of step `{outer}`; a step \
                         body cannot wait durably (the run cannot park while a body runs): \
                         call ctx.first_of from the function body between steps"
                    ),
                    StepKind::Run => format!(
                        "step `{key}` was called inside the body of step `{outer}`; steps \
                         cannot nest: call `{key}` from the function body, or make it a plain \
                         async fn"
                    ),
                },
                Some(&outer),
            );
            return (key, position, Resolution::Halt);
        }
        if position as usize >= self.limits.steps_per_run {
            drop(st);
            self.fail(
                FailureKind::Limit,
                format!(
                    "step `{key}` would be step number {} of this run, over the limit of {} \
                     steps per run (configure it with Limits::steps_per_run)",
                    position + 1,
                    self.limits.steps_per_run
                ),
                Some(&key),
            );
            return (key, position, Resolution::Halt);
        }
        let mismatch = match st.recorded.get(&key) {
            Some(rec) if rec.position != position || rec.kind != kind => Some(format!(
                "replay called {} `{key}` at position {position}, but the record has {}{}",
                describe_kind(kind),
                match st.recorded_at.get(&position) {
                    Some(other) => format!("`{other}` at position {position} and "),
                    None => String::new(),
                },
                format_args!(
                    "{} `{key}` at position {}",
                    describe_kind(rec.kind),
                    rec.position
                ),
            )),
            Some(rec) => return (key, position, Resolution::Replay(rec.clone())),
            None => st.recorded_at.get(&position).map(|other| {
                format!(
                    "replay called {} `{key}` at position {position}, but the record has \
                     {} `{other}` there",
                    describe_kind(kind),
                    st.recorded
                        .get(other)
                        .map_or("step", |rec| describe_kind(rec.kind))
                )
            }),
        };
        if let Some(detail) = mismatch {
            drop(st);
            self.block(
                format!(
                    "non-determinism in function `{}`: {detail}. Steps must be called in the \
                     same order on every execution: move what varies between executions \
                     (clock, randomness, I/O) into a step, or use ctx.now() / ctx.uuid(). \
                     The run is held as blocked until a worker whose code replays it takes \
                     it up (roll the deploy back, or keep the old order for runs in flight)",
                    self.function_id
                ),
                Some(&key),
            );
            return (key, position, Resolution::Halt);
        }
        let failed_before = st.failed.get(&key).copied().unwrap_or(0);
        (key, position, Resolution::Execute { failed_before })
    }

    /// Admits a step body to run, unless the run is parking or stopping. Returns
    /// whether the body must first be named in the store (the run was lost before).
    pub fn begin_body(&self) -> Option<bool> {
        self.admit(false)
    }

    /// Admits a write that starts no body, a sleep recording its wake time, as
    /// [`begin_body`](RunCore::begin_body) does, but also while the run is about
    /// to park: the park then waits for it, and joins the sleep's. (A sleep
    /// joined with a wait polled first would otherwise be recorded only after the
    /// wait ended, its time counted from then.)
    pub fn begin_record(&self) -> Option<bool> {
        self.admit(true)
    }

    fn admit(&self, while_parking: bool) -> Option<bool> {
        let mut st = self.state();
        let parking = st.park.is_some() && !while_parking;
        if st.stop.is_some() || parking || st.release || self.has_ended() {
            return None;
        }
        if st.shutting_down {
            drop(st);
            self.release();
            return None;
        }
        st.inflight += 1;
        Some(std::mem::take(&mut st.mark_next_step))
    }

    pub fn end_body(&self) {
        self.state().inflight -= 1;
        self.changed.notify_one();
    }

    /// The deadline of wait `key`, if the run registered it before and nothing has
    /// resolved it.
    pub fn open_wait(&self, key: &str) -> Option<DateTime<Utc>> {
        self.state().open_waits.get(key).copied()
    }

    /// Failed attempts recorded for `key` before this execution.
    pub fn failed_before(&self, key: &str) -> u32 {
        self.state().failed.get(key).copied().unwrap_or(0)
    }

    /// Counts a new output towards the run-state limit.
    pub fn add_state_bytes(&self, bytes: usize) -> Result<(), String> {
        let mut st = self.state();
        if st.state_bytes + bytes > self.limits.run_state_bytes {
            return Err(format!(
                "the run's state would be {} bytes, over the limit of {} bytes \
                 (configure it with Limits::run_state_bytes)",
                st.state_bytes + bytes,
                self.limits.run_state_bytes
            ));
        }
        st.state_bytes += bytes;
        Ok(())
    }

    pub fn next_uuid_call(&self) -> u64 {
        let mut st = self.state();
        st.uuid_calls += 1;
        st.uuid_calls
    }
}

/// How long before its lease expires an execution stops when the lease has not
/// been extended: a fifth of the lease (6 s of the default 30 s), time for its
/// last writes to land before another worker may take the run over.
pub(crate) fn lease_margin(lease: Duration) -> Duration {
    lease / 5
}

fn describe_kind(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Run => "step",
        StepKind::Sleep => "sleep",
        StepKind::Now => "ctx.now()",
        StepKind::Wait => "wait",
        StepKind::SendEvent => "send",
        StepKind::Invoke => "invoke",
        StepKind::Signal => "signal wait",
        StepKind::FirstOf => "race",
    }
}

pub(crate) fn json_len(value: &serde_json::Value) -> usize {
    serde_json::to_vec(value).map_or(0, |v| v.len())
}
