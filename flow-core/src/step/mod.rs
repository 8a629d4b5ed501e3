//! One step call: resolved against the record when it is made (so `join!` and
//! `tokio::spawn` get keys in call order), executed and checkpointed when awaited.
//!
//! One file per step tool: `run` (a body, retried and checkpointed), `sleep`,
//! `now`, `wait` (for an event), `send` (events), `invoke` (another function);
//! what they share is here.

mod first_of;
mod invoke;
mod now;
mod run;
mod send;
mod signal;
mod sleep;
mod wait;

pub use first_of::{Branch, First2, First3, First4, FirstOf, Race, RaceEntry};
pub use invoke::{Invocation, Invoke};
pub use signal::WaitForSignal;
pub use sleep::Sleep;
pub use wait::{HasTimeout, MAX_WAIT, Timeout, TimeoutMissing, WaitForEvent};

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::run::core::{Resolution, RunCore, Stop};
use crate::store::{Committed, FailureKind, StepRecord, Transition};
use crate::{StepError, StepKind, StepOptions};

/// A step call, made by `#[step]` fns and [`Ctx::run`](crate::Ctx::run). Its key and position are
/// fixed when it is created.
pub struct StepCall {
    core: Arc<RunCore>,
    key: String,
    position: u32,
    kind: StepKind,
    options: StepOptions,
    resolution: Resolution,
}

impl StepCall {
    /// Resolves a call of step `id` of the run `core` drives, now.
    pub(crate) fn new(core: &Arc<RunCore>, id: &str, options: StepOptions) -> Self {
        Self::new_kind(core, id, StepKind::Run, options)
    }

    pub(crate) fn new_kind(
        core: &Arc<RunCore>,
        id: &str,
        kind: StepKind,
        options: StepOptions,
    ) -> Self {
        let core = core.clone();
        if let Err(problem) = check_step_id(id) {
            core.fail(FailureKind::Usage, problem, None);
            return StepCall {
                core,
                key: id.to_owned(),
                position: 0,
                kind,
                options,
                resolution: Resolution::Halt,
            };
        }
        let (key, position, resolution) = core.resolve(id, kind);
        StepCall {
            core,
            key,
            position,
            kind,
            options,
            resolution,
        }
    }

    fn record(
        &self,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        attempts: u32,
        output: Option<serde_json::Value>,
        error: Option<serde_json::Value>,
    ) -> StepRecord {
        StepRecord {
            key: self.key.clone(),
            position: self.position,
            kind: self.kind,
            output,
            error,
            attempts,
            started_at,
            finished_at,
            wake_at: None,
        }
    }

    /// The error a record holds, if it holds one: what the step returns on every
    /// replay.
    fn recorded_error(&self, record: &StepRecord) -> Option<StepError> {
        let error = record.error.as_ref()?;
        let error: StepError = serde_json::from_value(error.clone())
            .unwrap_or_else(|_| StepError::fatal(error.to_string()));
        Some(error.in_step(&self.key))
    }

    /// Writes a checkpoint; false when it was not kept (the run is stopping).
    async fn write(&self, record: StepRecord) -> bool {
        self.core
            .commit_or_stop(Transition::step(record), &self.key)
            .await
    }

    /// Records what a wait returns once its deadline passed (a wait for an event
    /// or a signal: a null output; an invoke: its error), unless the store resolved
    /// it first: the run is then handed back, and its replay returns that.
    async fn record_deadline(
        &self,
        now: DateTime<Utc>,
        output: Option<serde_json::Value>,
        error: Option<serde_json::Value>,
    ) -> Result<StepRecord, StepError> {
        let record = self.record(now, now, 1, output, error);
        self.write_first(Transition::step(record.clone())).await?;
        Ok(record)
    }

    /// Writes records a wait or a race decides by itself (not a body's result),
    /// unless this step was recorded first by someone else (the store resolved
    /// it meanwhile): the run is then handed back, and its replay returns that.
    async fn write_first(&self, transition: Transition) -> Result<(), StepError> {
        let Some(_) = self.core.begin_body() else {
            return Err(self.halted().await);
        };
        let guard = BodyGuard(&self.core);
        let kept = self.core.commit_kept(transition, &self.key).await;
        drop(guard);
        match kept {
            Some(Committed::Written) => Ok(()),
            Some(_) => {
                self.core.stop(Stop::Release);
                Err(self.halted().await)
            }
            None => Err(self.halted().await),
        }
    }

    /// Waits while the run's execution goes on without this call (it parks or
    /// stops; in the handler, the driver then drops this future), and once the
    /// execution has ended returns the error a call from a task that outlived it
    /// gets.
    async fn halted(&self) -> StepError {
        self.core.until_ended().await;
        StepError::fatal(format!(
            "`{}` was called, or still running, after its run's execution on this worker \
             ended (the run finished, parked, or was handed back or taken over); steps \
             in a task spawned off the handler must be awaited before the handler returns",
            self.key
        ))
        .in_step(&self.key)
    }
}

/// Keeps the driver from parking while a body runs; released on every exit path,
/// also when the step's future is dropped.
struct BodyGuard<'a>(&'a RunCore);

impl Drop for BodyGuard<'_> {
    fn drop(&mut self) {
        self.0.end_body();
    }
}

/// Why a wait's timeout cannot be used, if it cannot: it is over [`MAX_WAIT`].
fn timeout_problem(what: &str, key: &str, timeout: std::time::Duration) -> Option<String> {
    (timeout > MAX_WAIT)
        .then(|| format!("{what} `{key}` has a timeout of {timeout:?}, over the limit of 366 days"))
}

/// Where in a value deserialization failed, for an error message: empty at the
/// root, else ` at `path``.
fn at_path(path: &str) -> String {
    if path == "." {
        String::new()
    } else {
        format!(" at `{path}`")
    }
}

fn check_step_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("a step id cannot be empty".into());
    }
    if id.contains(':') {
        return Err(format!(
            "step id `{id}` contains `:`, which flow uses to number repeated calls (`id:1`); \
             use another character"
        ));
    }
    Ok(())
}

/// Takes the box itself: a `&Box<dyn Any>` would coerce to a `dyn Any` that is the box.
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn floats_read_back_from_json_bit_for_bit() {
        // serde_json's default parser may be one ULP off; outputs must not be.
        for bits in [
            0x3fefeb6fa7e2cfd4u64,
            0x3f827ff5d2ea7a50,
            0x3fb999999999999a,
        ] {
            let x = f64::from_bits(bits);
            let back: f64 = serde_json::from_slice(&serde_json::to_vec(&x).unwrap()).unwrap();
            assert_eq!(back.to_bits(), x.to_bits());
        }
        for i in 0..10_000u64 {
            let x = (i.wrapping_mul(0x9e3779b97f4a7c15) >> 11) as f64 / (1u64 << 53) as f64;
            let back: f64 = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
            assert_eq!(back.to_bits(), x.to_bits(), "{x}");
        }
    }
}
