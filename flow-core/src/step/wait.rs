//! `wait_for_event`: the run parks until an event that matches arrives (or had
//! arrived since its last checkpoint), or until the wait's deadline. The store
//! resolves the wait and records the event as the step's output; a timeout is
//! recorded by the run itself when it wakes at the deadline.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::StepCall;
use crate::run::core::Resolution;
use crate::store::{EventWait, FailureKind, Park};
use crate::{Event, EventFields, Field, StepError};

/// The longest a wait may last (and the farthest back it may look).
pub const MAX_WAIT: Duration = Duration::from_secs(366 * 24 * 3600);

/// A wait for an event of type `E`, made by
/// [`Ctx::wait_for_event`](crate::Ctx::wait_for_event). Awaited, it returns the
/// first matching event, or `None` when the timeout passes first; it needs a
/// [`timeout`](WaitForEvent::timeout) before it can be awaited.
#[must_use = "a wait does nothing until it is awaited"]
pub struct WaitForEvent<E, T> {
    call: StepCall,
    called_at: DateTime<Utc>,
    field: String,
    value: Option<Value>,
    lookback: Duration,
    timeout: T,
    problem: Option<String>,
    event: PhantomData<fn() -> E>,
}

/// A [`WaitForEvent`] not yet given its timeout: it cannot be awaited until
/// `.timeout(d)` gives it one.
#[derive(Clone, Copy, Debug)]
pub struct TimeoutMissing;

/// A [`WaitForEvent`]'s timeout.
#[derive(Clone, Copy, Debug)]
pub struct Timeout(pub(super) Duration);

/// What a wait needs before it can be awaited: a timeout.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "a wait needs a timeout before it can be awaited",
    label = "add `.timeout(Duration::from_secs(..))` to this wait",
    note = "a wait lasts at most 366 days; it returns `None` when its timeout passes"
)]
pub trait HasTimeout {
    #[doc(hidden)]
    fn duration(&self) -> Duration;
}

impl HasTimeout for Timeout {
    fn duration(&self) -> Duration {
        self.0
    }
}

impl<E: Event> WaitForEvent<E, TimeoutMissing> {
    pub(crate) fn new(call: StepCall, called_at: DateTime<Utc>) -> Self {
        WaitForEvent {
            call,
            called_at,
            field: String::new(),
            value: None,
            lookback: Duration::ZERO,
            timeout: TimeoutMissing,
            problem: None,
            event: PhantomData,
        }
    }

    /// How long the wait lasts, counted from its call (at most 366 days); when it
    /// passes first, the wait returns `None`.
    pub fn timeout(self, timeout: Duration) -> WaitForEvent<E, Timeout> {
        let problem = self
            .problem
            .or_else(|| super::timeout_problem("wait", &self.call.key, timeout));
        WaitForEvent {
            call: self.call,
            called_at: self.called_at,
            field: self.field,
            value: self.value,
            lookback: self.lookback,
            timeout: Timeout(timeout),
            problem,
            event: PhantomData,
        }
    }
}

impl<E: Event, T> WaitForEvent<E, T> {
    /// Only an event whose `field` equals `value` resolves the wait:
    /// `.matching(|f| f.payment_id, &payment.id)`. The field is one of those
    /// `#[derive(Event)]` made for `E`, so a misspelt name or a value of another
    /// type does not compile. Compared as JSON: match on strings, integers or
    /// booleans, of at most [`MATCH_VALUE_BYTES`](crate::MATCH_VALUE_BYTES) as
    /// JSON text (a longer value fails the run when the wait is awaited).
    pub fn matching<V: Serialize>(
        mut self,
        field: impl FnOnce(&E::Fields) -> Field<E, V>,
        value: impl Into<V>,
    ) -> Self
    where
        E: EventFields,
    {
        let field = field(&E::FIELDS);
        if !self.field.is_empty() {
            self.problem.get_or_insert_with(|| {
                format!(
                    "wait `{}` matches on `{}` and on `{}`; a wait matches on one field",
                    self.call.key,
                    self.field,
                    field.name()
                )
            });
        }
        match serde_json::to_value(value.into()) {
            Ok(value) => {
                let len = value.to_string().len();
                if len > crate::MATCH_VALUE_BYTES {
                    self.problem.get_or_insert_with(|| {
                        format!(
                            "wait `{}` matches `{}` on a value of {len} bytes as JSON, over \
                             the limit of {} bytes: match on an id, not a document",
                            self.call.key,
                            field.name(),
                            crate::MATCH_VALUE_BYTES
                        )
                    });
                }
                self.value = Some(value);
            }
            Err(e) => {
                self.problem.get_or_insert_with(|| {
                    format!(
                        "the value wait `{}` matches `{}` on does not serialize: {e}",
                        self.call.key,
                        field.name()
                    )
                });
            }
        }
        self.field = field.name().to_owned();
        self
    }

    /// Also accepts a matching event stored up to `lookback` before the wait
    /// began (at most 366 days): an event that came first is not lost.
    pub fn lookback(mut self, lookback: Duration) -> Self {
        if lookback > MAX_WAIT {
            self.problem.get_or_insert_with(|| {
                format!(
                    "wait `{}` looks back {lookback:?}, over the limit of 366 days",
                    self.call.key
                )
            });
        }
        self.lookback = lookback;
        self
    }
}

impl<E: Event, T: HasTimeout> IntoFuture for WaitForEvent<E, T> {
    type Output = Result<Option<E>, StepError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let expires_at = crate::clock::later(self.called_at, self.timeout.duration());
        let spec = Spec {
            name: E::NAME,
            field: self.field,
            value: self.value,
            lookback: self.lookback,
            expires_at,
            problem: self.problem,
        };
        let call = self.call;
        Box::pin(async move {
            let key = call.key.clone();
            match call.wait(spec).await? {
                None => Ok(None),
                Some(event) => decode::<E>(&key, event).map(Some),
            }
        })
    }
}

impl<E: Event> super::Branch for WaitForEvent<E, Timeout> {
    type Value = Option<E>;

    fn race_entry(&self) -> super::RaceEntry {
        let deadline = crate::clock::later(self.called_at, self.timeout.0);
        let deadline = self.call.core.open_wait(&self.call.key).unwrap_or(deadline);
        super::RaceEntry::of(&self.call, Some(deadline))
    }
}

/// What a wait waits for, once built.
struct Spec {
    name: &'static str,
    field: String,
    value: Option<Value>,
    lookback: Duration,
    expires_at: DateTime<Utc>,
    problem: Option<String>,
}

/// The awaited type from a recorded event (`{id, name, data, ts}`). Data that does
/// not fit is the producer's mistake, not the code's: the handler gets a fatal
/// step error it can handle, the same on every replay.
fn decode<E: Event>(key: &str, event: Value) -> Result<E, StepError> {
    let id = event.get("id").cloned().unwrap_or(Value::Null);
    let data = event.get("data").cloned().unwrap_or(Value::Null);
    serde_path_to_error::deserialize(data).map_err(|e| {
        let path = e.path().to_string();
        StepError::fatal(format!(
            "wait `{key}` was resolved by event {id} (`{}`), whose data does not fit `{}`{}: {}",
            E::NAME,
            std::any::type_name::<E>(),
            super::at_path(&path),
            e.inner()
        ))
        .in_step(key)
    })
}

impl StepCall {
    /// The event that resolved the wait (as recorded), or `None` on timeout.
    async fn wait(self, spec: Spec) -> Result<Option<Value>, StepError> {
        match &self.resolution {
            Resolution::Halt => return Err(self.halted().await),
            Resolution::Replay(record) => {
                return Ok(record.output.clone().filter(|v| !v.is_null()));
            }
            Resolution::Execute { .. } => {}
        }
        if let Some(problem) = spec.problem {
            self.core.fail(FailureKind::Usage, problem, Some(&self.key));
            return Err(self.halted().await);
        }
        // A wait registered before keeps its deadline (its start is kept by the store).
        let expires_at = self.core.open_wait(&self.key).unwrap_or(spec.expires_at);
        let now = self.core.clock.now();
        if expires_at > now {
            self.core.park(Park::wait(EventWait {
                key: self.key.clone(),
                position: self.position,
                name: spec.name.to_owned(),
                field: spec.field,
                value: spec.value,
                lookback: spec.lookback,
                expires_at,
            }));
            return Err(self.halted().await);
        }
        // Timed out: recorded as a null output. The store closes the wait with it.
        self.record_deadline(now, Some(Value::Null), None).await?;
        Ok(None)
    }
}
