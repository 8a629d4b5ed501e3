//! `wait_for_signal`: the run parks until a signal is sent to the name it waits
//! on (or takes one kept under the name), or until the wait's deadline. One run
//! waits on a name at a time: the store records the signal as the step's output,
//! or, when another run holds the name, an error that names that run (see
//! [`SignalWait`]); a timeout is recorded by the run itself when it wakes at the
//! deadline.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{HasTimeout, StepCall, Timeout, TimeoutMissing};
use crate::StepError;
use crate::run::core::Resolution;
use crate::store::{FailureKind, Park, SignalWait};

/// A wait for a signal whose payload reads as `T`, made by
/// [`Ctx::wait_for_signal`](crate::Ctx::wait_for_signal). Awaited, it returns the
/// payload, or `None` when the timeout passes first; it needs a
/// [`timeout`](WaitForSignal::timeout) before it can be awaited.
#[must_use = "a wait does nothing until it is awaited"]
pub struct WaitForSignal<T, Tm> {
    call: StepCall,
    called_at: DateTime<Utc>,
    name: String,
    timeout: Tm,
    problem: Option<String>,
    payload: PhantomData<fn() -> T>,
}

impl<T> WaitForSignal<T, TimeoutMissing> {
    pub(crate) fn new(call: StepCall, called_at: DateTime<Utc>, name: String) -> Self {
        let problem = crate::limits::signal_name_problem(&name)
            .map(|problem| format!("signal wait `{}`: {problem}", call.key));
        WaitForSignal {
            call,
            called_at,
            name,
            timeout: TimeoutMissing,
            problem,
            payload: PhantomData,
        }
    }

    /// How long the wait lasts, counted from its call (at most 366 days); when it
    /// passes first, the wait returns `None` and the name is free for another run.
    pub fn timeout(self, timeout: Duration) -> WaitForSignal<T, Timeout> {
        let problem = self
            .problem
            .or_else(|| super::timeout_problem("signal wait", &self.call.key, timeout));
        WaitForSignal {
            call: self.call,
            called_at: self.called_at,
            name: self.name,
            timeout: Timeout(timeout),
            problem,
            payload: PhantomData,
        }
    }
}

impl<T: DeserializeOwned + Send + 'static, Tm: HasTimeout> IntoFuture for WaitForSignal<T, Tm> {
    type Output = Result<Option<T>, StepError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let expires_at = crate::clock::later(self.called_at, self.timeout.duration());
        let WaitForSignal {
            call,
            name,
            problem,
            ..
        } = self;
        Box::pin(async move {
            match call.wait_signal(name, expires_at, problem).await? {
                None => Ok(None),
                Some(signal) => decode::<T>(&call.key, signal).map(Some),
            }
        })
    }
}

impl<T: DeserializeOwned + Send + 'static> super::Branch for WaitForSignal<T, Timeout> {
    type Value = Option<T>;

    fn race_entry(&self) -> super::RaceEntry {
        let deadline = crate::clock::later(self.called_at, self.timeout.0);
        let deadline = self.call.core.open_wait(&self.call.key).unwrap_or(deadline);
        super::RaceEntry::of(&self.call, Some(deadline))
    }
}

/// The payload from a recorded signal (`{signal, data, ts}`). A payload that does
/// not fit is the sender's mistake, not the code's: the handler gets a fatal step
/// error it can handle, the same on every replay.
fn decode<T: DeserializeOwned>(key: &str, signal: Value) -> Result<T, StepError> {
    let name = signal.get("signal").cloned().unwrap_or(Value::Null);
    let data = signal.get("data").cloned().unwrap_or(Value::Null);
    serde_path_to_error::deserialize(data).map_err(|e| {
        let path = e.path().to_string();
        StepError::fatal(format!(
            "signal wait `{key}` was resolved by signal {name}, whose payload does not fit \
             `{}`{}: {}",
            std::any::type_name::<T>(),
            super::at_path(&path),
            e.inner()
        ))
        .in_step(key)
    })
}

impl StepCall {
    /// The signal that resolved the wait (as recorded), or `None` on timeout.
    async fn wait_signal(
        &self,
        name: String,
        expires_at: DateTime<Utc>,
        problem: Option<String>,
    ) -> Result<Option<Value>, StepError> {
        match &self.resolution {
            Resolution::Halt => return Err(self.halted().await),
            Resolution::Replay(record) => {
                if let Some(error) = self.recorded_error(record) {
                    return Err(error);
                }
                return Ok(record.output.clone().filter(|v| !v.is_null()));
            }
            Resolution::Execute { .. } => {}
        }
        if let Some(problem) = problem {
            self.core.fail(FailureKind::Usage, problem, Some(&self.key));
            return Err(self.halted().await);
        }
        // A wait registered before keeps its deadline.
        let expires_at = self.core.open_wait(&self.key).unwrap_or(expires_at);
        let now = self.core.clock.now();
        if expires_at > now {
            self.core.park(Park::signal(SignalWait {
                key: self.key.clone(),
                position: self.position,
                name,
                expires_at,
            }));
            return Err(self.halted().await);
        }
        // Timed out: recorded as a null output. The store closes the wait with it.
        self.record_deadline(now, Some(Value::Null), None).await?;
        Ok(None)
    }
}
