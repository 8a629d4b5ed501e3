//! [`Ctx`]: a run's handle inside its handler and steps, and the per-run state
//! behind it (the memo of checkpoints, the step cursor, park and stop requests).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::step::StepCall;
use crate::store::{Checkpoints, FailedAttempt, Park, StepRecord};
use crate::{Backoff, Clock, Error, Limits, RunId, StepError, StepKind, StepOptions};

/// A run's handle, the first parameter of every handler and step.
///
/// It is cheap to clone and `Send`, so steps work inside `tokio::spawn` and `join!`.
#[derive(Clone)]
pub struct Ctx {
    pub(crate) core: Arc<RunCore>,
}

/// The writes a running run makes, fenced by its lease. Type-erased so that `Ctx`
/// is not generic over the store; one boxed future per write, next to a database
/// round trip, costs nothing measurable.
pub(crate) trait RunIo: Send + Sync {
    fn checkpoint(&self, step: StepRecord) -> BoxFuture<'_, Result<(), Error>>;
    fn record_failure<'a>(&'a self, attempt: &'a FailedAttempt)
    -> BoxFuture<'a, Result<(), Error>>;
    fn mark_step<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Error>>;
}

/// Why the driver must stop polling a run's handler before it finishes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Stop {
    /// Another worker owns the run: drop it, write nothing.
    LeaseLost,
    /// The run cannot go on (non-determinism, a limit): fail it with this message.
    Fail(String),
    /// Hand the run back, claimable at once.
    Release,
}

pub(crate) struct RunCore {
    pub run_id: RunId,
    pub function_id: &'static str,
    pub retries: u32,
    pub backoff: Backoff,
    pub io: Arc<dyn RunIo>,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    state: Mutex<RunState>,
    /// Signalled whenever the driver may have something to do.
    pub changed: Notify,
}

#[derive(Default)]
struct RunState {
    /// Checkpoints loaded when the run resumed, by key.
    recorded: HashMap<String, StepRecord>,
    /// The same, by call-order position.
    recorded_at: HashMap<u32, String>,
    /// Failed attempts per step key.
    failed: HashMap<String, u32>,
    /// How many times each step id has been called in this execution.
    repeats: HashMap<String, u32>,
    next_position: u32,
    uuid_calls: u64,
    state_bytes: usize,
    /// Step bodies running now; the driver parks only when this is zero.
    inflight: u32,
    park: Option<Park>,
    stop: Option<Stop>,
    shutting_down: bool,
    /// The run was lost by earlier workers: name the first step it executes.
    mark_next_step: bool,
}

/// What the driver should do with a run it is polling.
pub(crate) enum Decision {
    Park(Park),
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

impl RunCore {
    pub fn new(
        run_id: RunId,
        def: &'static crate::FunctionDef,
        io: Arc<dyn RunIo>,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> Self {
        RunCore {
            run_id,
            function_id: def.id,
            retries: def.retries,
            backoff: def.backoff,
            io,
            clock,
            limits,
            state: Mutex::new(RunState::default()),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, RunState> {
        // A panic while the lock is held cannot leave the state half-written (every
        // critical section is a few assignments), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fills the memo from a resumed run's checkpoints.
    pub fn load(&self, checkpoints: Checkpoints, lost_before: bool) {
        let mut st = self.state();
        for (key, failed) in checkpoints.failed_attempts {
            st.failed.insert(key, failed);
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

    /// Asks the driver to park the run once no step body is running. Of several
    /// requests the earliest wins; a sleep that ends later is parked again on replay.
    pub fn park(&self, park: Park) {
        {
            let mut st = self.state();
            st.park = Some(match (st.park, park) {
                (None, p) => p,
                (Some(Park::Release), _) | (_, Park::Release) => Park::Release,
                (Some(old), new) => {
                    if park_time(new) < park_time(old) {
                        new
                    } else {
                        old
                    }
                }
            });
        }
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
            self.park(Park::Release);
        }
        self.changed.notify_one();
    }

    /// What the driver should do now, if anything.
    pub fn decision(&self) -> Option<Decision> {
        let st = self.state();
        if let Some(stop) = &st.stop {
            return Some(Decision::Stop(stop.clone()));
        }
        match st.park {
            Some(park) if st.inflight == 0 => Some(Decision::Park(park)),
            _ => None,
        }
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
        if st.stop.is_some() {
            return (key, position, Resolution::Halt);
        }
        if let Some(outer) = crate::step::current_step() {
            drop(st);
            self.stop(Stop::Fail(format!(
                "step `{key}` was called inside the body of step `{outer}`; steps cannot \
                 nest: call `{key}` from the function body, or make it a plain async fn"
            )));
            return (key, position, Resolution::Halt);
        }
        if position as usize >= self.limits.steps_per_run {
            drop(st);
            self.stop(Stop::Fail(format!(
                "step `{key}` would be step number {} of this run, over the limit of {} \
                 steps per run (configure it with Limits::steps_per_run)",
                position + 1,
                self.limits.steps_per_run
            )));
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
                     step `{other}` there",
                    describe_kind(kind)
                )
            }),
        };
        if let Some(detail) = mismatch {
            drop(st);
            self.stop(Stop::Fail(format!(
                "non-determinism in function `{}`: {detail}. Steps must be called in the \
                 same order on every execution: move what varies between executions \
                 (clock, randomness, I/O) into a step, or use ctx.now() / ctx.uuid()",
                self.function_id
            )));
            return (key, position, Resolution::Halt);
        }
        let failed_before = st.failed.get(&key).copied().unwrap_or(0);
        (key, position, Resolution::Execute { failed_before })
    }

    /// Admits a step body to run, unless the run is parking or stopping. Returns
    /// whether the body must first be named in the store (the run was lost before).
    pub fn begin_body(&self) -> Option<bool> {
        let mut st = self.state();
        if st.stop.is_some() || st.park.is_some() {
            return None;
        }
        if st.shutting_down {
            drop(st);
            self.park(Park::Release);
            return None;
        }
        st.inflight += 1;
        Some(std::mem::take(&mut st.mark_next_step))
    }

    pub fn end_body(&self) {
        self.state().inflight -= 1;
        self.changed.notify_one();
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

    fn next_uuid_call(&self) -> u64 {
        let mut st = self.state();
        st.uuid_calls += 1;
        st.uuid_calls
    }
}

fn park_time(park: Park) -> DateTime<Utc> {
    match park {
        Park::Sleep(t) | Park::Retry(t) => t,
        Park::Release => DateTime::<Utc>::MIN_UTC,
    }
}

fn describe_kind(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Run => "step",
        StepKind::Sleep => "sleep",
        StepKind::Now => "ctx.now()",
    }
}

pub(crate) fn json_len(value: &serde_json::Value) -> usize {
    serde_json::to_vec(value).map_or(0, |v| v.len())
}

impl Ctx {
    /// The run's id.
    pub fn run_id(&self) -> RunId {
        self.core.run_id
    }

    /// The id of the function this run executes.
    pub fn function_id(&self) -> &'static str {
        self.core.function_id
    }

    /// Runs `body` as a checkpointed step named `id`: on replay its recorded result
    /// comes back without calling `body`.
    ///
    /// ```no_run
    /// # async fn demo(ctx: &flow_core::Ctx) -> Result<(), flow_core::StepError> {
    /// let total: i64 = ctx.run("sum-invoices", || async { Ok::<_, flow_core::StepError>(42) }).await?;
    /// # Ok(()) }
    /// ```
    pub fn run<'a, T, E, F, Fut>(
        &'a self,
        id: &str,
        body: F,
    ) -> impl Future<Output = Result<T, StepError>> + Send + 'a
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: Into<StepError> + Send + 'a,
        F: FnOnce() -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, E>> + Send + 'a,
    {
        self.run_with(id, StepOptions::DEFAULT, body)
    }

    /// [`Ctx::run`] with retry options for this step.
    pub fn run_with<'a, T, E, F, Fut>(
        &'a self,
        id: &str,
        options: StepOptions,
        body: F,
    ) -> impl Future<Output = Result<T, StepError>> + Send + 'a
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: Into<StepError> + Send + 'a,
        F: FnOnce() -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, E>> + Send + 'a,
    {
        let call = StepCall::new(self, id, options);
        async move { call.run_lazy(body).await }
    }

    /// Sleeps for `duration`, durably: the run is parked (no worker slot, no memory)
    /// and resumes on whichever worker is up when the time comes.
    pub async fn sleep(&self, id: &str, duration: Duration) -> Result<(), StepError> {
        let until = crate::clock::later(self.core.clock.now(), duration);
        self.sleep_inner(id, until).await
    }

    /// Sleeps until `until`, durably (see [`Ctx::sleep`]).
    pub async fn sleep_until(&self, id: &str, until: DateTime<Utc>) -> Result<(), StepError> {
        self.sleep_inner(id, until).await
    }

    async fn sleep_inner(&self, id: &str, until: DateTime<Utc>) -> Result<(), StepError> {
        StepCall::new_kind(self, id, StepKind::Sleep, StepOptions::DEFAULT)
            .sleep(until)
            .await
    }

    /// The current time, journaled: recorded once, the same on every replay.
    pub async fn now(&self) -> DateTime<Utc> {
        StepCall::new_kind(self, "now", StepKind::Now, StepOptions::DEFAULT)
            .now()
            .await
    }

    /// A UUID that is the same on every replay: derived from the run id and how many
    /// times `uuid()` was called before. Unfit for secrets.
    pub fn uuid(&self) -> Uuid {
        let n = self.core.next_uuid_call();
        Uuid::new_v5(&self.core.run_id.0, format!("flow/uuid/{n}").as_bytes())
    }

    /// A number in `0.0..1.0` that is the same on every replay (derived like
    /// [`Ctx::uuid`]). Unfit for secrets.
    pub fn random(&self) -> f64 {
        let bytes = self.uuid().into_bytes();
        let bits = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        (bits >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("run_id", &self.core.run_id)
            .field("function_id", &self.core.function_id)
            .finish()
    }
}
