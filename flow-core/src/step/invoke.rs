//! `invoke`: a run of another `#[function]`, started as a step. The parent parks
//! (holding no worker) while the child runs; the statement that ends the child
//! records how it ended as the invoke step's output or error and wakes the
//! parent. A child's failure, cancel or timeout is the step's error, fatal: the
//! invoke is not retried, so retries do not multiply down a chain of invokes.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use super::{MAX_WAIT, StepCall};
use crate::run::core::Resolution;
use crate::store::{FailureKind, NewRun, Park, RunWait, StepRecord};
use crate::system::FUNCTION_INVOKED;
use crate::{EventId, FunctionDef, RunId, StepError};

/// A `#[function]` with the payload to run it with, made by the `with` fn the
/// macro gives each function (`thumbnail::with(request)`), whose parameter is the
/// function's event type and whose `T` is its output: a payload of another type
/// does not compile. Run it as a step with [`Ctx::invoke`](crate::Ctx::invoke).
#[must_use = "an invocation does nothing until `ctx.invoke` runs it"]
pub struct Invocation<T> {
    function: &'static FunctionDef,
    data: Result<Value, String>,
    output: PhantomData<fn() -> T>,
}

impl<T> Invocation<T> {
    /// `function` with `event` as its payload.
    pub(crate) fn new(function: &'static FunctionDef, event: impl Serialize) -> Self {
        Invocation {
            function,
            data: serde_json::to_value(event).map_err(|e| e.to_string()),
            output: PhantomData,
        }
    }

    /// Why its payload cannot be stored as its run's event, if it cannot: it does
    /// not serialize, is over the event size limit, or holds a NUL.
    pub(crate) fn payload_problem(&self, limits: &crate::Limits) -> Option<String> {
        let id = self.function.id;
        let data = match &self.data {
            Ok(data) => data,
            Err(e) => {
                return Some(format!(
                    "the payload of an invoke of function `{id}` does not serialize: {e}"
                ));
            }
        };
        if let Err(e) = limits.check_event(FUNCTION_INVOKED, crate::run::core::json_len(data)) {
            return Some(format!("the payload of an invoke of function `{id}`: {e}"));
        }
        crate::limits::find_nul(data).map(|path| {
            format!(
                "the payload of an invoke of function `{id}` holds a NUL character (\\u0000) \
                 at `{path}`, which the database cannot store"
            )
        })
    }
}

impl<T> std::fmt::Debug for Invocation<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invocation")
            .field("function", &self.function.id)
            .field("data", &self.data)
            .finish()
    }
}

/// An invoke step, made by [`Ctx::invoke`](crate::Ctx::invoke). Awaited, it
/// returns the invoked function's output, or a fatal [`StepError`] when its run
/// failed, was cancelled, or did not end within the
/// [`timeout`](Invoke::timeout) (366 days unless set). A timed-out run goes on;
/// its end is then recorded nowhere in the parent.
#[must_use = "an invoke does nothing until it is awaited"]
pub struct Invoke<T> {
    call: StepCall,
    called_at: DateTime<Utc>,
    invocation: Invocation<T>,
    timeout: Duration,
    problem: Option<String>,
}

impl<T> Invoke<T> {
    pub(crate) fn new(
        call: StepCall,
        called_at: DateTime<Utc>,
        invocation: Invocation<T>,
        problem: Option<String>,
    ) -> Self {
        Invoke {
            call,
            called_at,
            invocation,
            timeout: MAX_WAIT,
            problem,
        }
    }

    /// How long the invoked run may take, counted from the call (at most 366
    /// days); when it passes first, the step fails, fatally.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        if self.problem.is_none() {
            self.problem = super::timeout_problem("invoke", &self.call.key, timeout);
        }
        self.timeout = timeout;
        self
    }
}

impl<T: DeserializeOwned + Send + 'static> IntoFuture for Invoke<T> {
    type Output = Result<T, StepError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let expires_at = crate::clock::later(self.called_at, self.timeout);
        let Invoke {
            call,
            invocation,
            timeout,
            problem,
            ..
        } = self;
        let spec = Spec {
            function: invocation.function,
            data: invocation.data.unwrap_or(Value::Null),
            expires_at,
            timeout,
            problem,
        };
        Box::pin(async move {
            let record = call.invoke(spec).await?;
            // The invoked run's output, read as the callee's output type.
            let output = StepRecord {
                output: record
                    .output
                    .and_then(|mut o| o.get_mut("output").map(Value::take)),
                ..record
            };
            match call.replayed::<T>(&output) {
                Some(result) => result,
                None => Err(call.halted().await),
            }
        })
    }
}

impl<T: DeserializeOwned + Send + 'static> super::Branch for Invoke<T> {
    type Value = T;

    fn race_entry(&self) -> super::RaceEntry {
        let deadline = crate::clock::later(self.called_at, self.timeout);
        let deadline = self.call.core.open_wait(&self.call.key).unwrap_or(deadline);
        super::RaceEntry::of(&self.call, Some(deadline))
    }
}

/// What an invoke runs, once built.
struct Spec {
    function: &'static FunctionDef,
    data: Value,
    expires_at: DateTime<Utc>,
    timeout: Duration,
    problem: Option<String>,
}

impl StepCall {
    /// The invoke's record once the invoked run ended (or the invoke timed out):
    /// the parent parks until then.
    async fn invoke(&self, spec: Spec) -> Result<StepRecord, StepError> {
        match &self.resolution {
            Resolution::Halt => return Err(self.halted().await),
            Resolution::Replay(record) => return Ok(record.clone()),
            Resolution::Execute { .. } => {}
        }
        if let Some(problem) = spec.problem {
            self.core.fail(FailureKind::Usage, problem, Some(&self.key));
            return Err(self.halted().await);
        }
        // An invoke that parked before has its run, and keeps its deadline.
        let open = self.core.open_wait(&self.key);
        let expires_at = open.unwrap_or(spec.expires_at);
        let now = self.core.clock.now();
        if expires_at > now {
            let start = open.is_none().then(|| NewRun {
                run_id: RunId(Uuid::now_v7()),
                function_id: spec.function.id,
                event_id: EventId(Uuid::now_v7()),
                data: spec.data,
            });
            self.core.park(Park::invoke(RunWait {
                key: self.key.clone(),
                position: self.position,
                expires_at,
                start,
            }));
            return Err(self.halted().await);
        }
        // Timed out: recorded as the step's error. The store closes the wait with it.
        let error = StepError::fatal(format!(
            "invoke `{}` timed out: the run of function `{}` it started did not end within \
             {:?} (it goes on)",
            self.key, spec.function.id, spec.timeout
        ))
        .in_step(&self.key);
        self.record_deadline(now, None, Some(error.to_stored()))
            .await
    }
}
