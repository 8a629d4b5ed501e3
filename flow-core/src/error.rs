//! The three error types: [`StepError`] (a step failed), [`FlowError`] (a handler
//! failed) and [`Error`] (the engine itself: configuration, database, limits).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The engine's own errors: configuration, database, limits, bad events, runs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is missing or wrong; the message says which and what to set.
    #[error("configuration: {0}")]
    Config(String),
    /// The database refused or could not be reached. The message never holds a password.
    #[error("database: {0}")]
    Database(String),
    /// The database could not be reached, or asked for the statement to be tried
    /// again (a dropped connection, a serialization failure, a busy file): the same
    /// write may succeed if it is retried.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A configured limit was exceeded.
    #[error(
        "{what} is {actual} bytes, over the limit of {limit} bytes (configure it with Limits::{setting})"
    )]
    Limit {
        /// What was too large (for example "event `app/x` data").
        what: String,
        /// The configured limit.
        limit: usize,
        /// The size that was refused.
        actual: usize,
        /// The `Limits` field that sets it.
        setting: &'static str,
    },
    /// A count limit was exceeded (events per send, steps per run).
    #[error("{what}: {actual} is over the limit of {limit} (configure it with Limits::{setting})")]
    TooMany {
        /// What was counted.
        what: String,
        /// The configured limit.
        limit: usize,
        /// The count that was refused.
        actual: usize,
        /// The `Limits` field that sets it.
        setting: &'static str,
    },
    /// An event is malformed (name, id or data).
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// Two `#[function]`s share one id.
    #[error("{0}")]
    DuplicateFunction(String),
    /// No worker has announced a function of this id (a function is known once a
    /// worker that serves it has started, or called `Worker::announce`).
    #[error(
        "no worker has announced function `{0}`: start a worker that serves it (or call \
         Worker::announce) first"
    )]
    FunctionNotFound(String),
    /// No run has this id.
    #[error("no run with id {0}")]
    RunNotFound(crate::RunId),
    /// A run that has ended cannot be cancelled.
    #[error(
        "run {run} has already ended ({status}): only a run that has not ended can be cancelled"
    )]
    AlreadyEnded {
        /// The run.
        run: crate::RunId,
        /// How it ended.
        status: crate::RunStatus,
    },
    /// A run that has not ended cannot be run again.
    #[error(
        "run {run} has not ended ({status}): only an ended run can be run again; cancel it first, \
         or wait for it to end"
    )]
    NotEnded {
        /// The run.
        run: crate::RunId,
        /// Where it is.
        status: crate::RunStatus,
    },
    /// Only a blocked run can be settled by an operator.
    #[error("run {run} is {status}, not blocked: only a blocked run can be settled")]
    NotBlocked {
        /// The run.
        run: crate::RunId,
        /// Its status now.
        status: crate::RunStatus,
    },
    /// Waiting for a run's result took longer than asked.
    #[error("run {run} did not finish within {waited:?} (it is {status})")]
    Timeout {
        /// The run waited for.
        run: crate::RunId,
        /// How long the caller waited.
        waited: Duration,
        /// Its status when the wait gave up.
        status: crate::RunStatus,
    },
    /// A run's output or an event did not (de)serialize.
    #[error("serialization: {0}")]
    Serde(String),
    /// No run waits for the signal, and the sender did not ask to buffer it:
    /// nothing was stored.
    #[error(
        "no run waits for signal `{name}`, so it was not sent; to keep it for the next \
         run that waits on the name, send it with Client::signal_or_buffer"
    )]
    NoSignalWaiter {
        /// The signal's name.
        name: String,
    },
    /// A signal's name or payload is not one flow can store.
    #[error("invalid signal: {0}")]
    InvalidSignal(String),
    /// A run ended without the result the caller asked for.
    #[error("run {run} {status}: {message}")]
    RunFailed {
        /// The run.
        run: crate::RunId,
        /// Its final status.
        status: crate::RunStatus,
        /// Its error message.
        message: String,
    },
}

impl Error {
    /// Whether the failure may pass if the same statement is tried again.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }

    /// A database error as flow reports it: on one line (drivers' messages may span
    /// several). Backends pass messages that hold no password.
    pub fn database(message: impl fmt::Display) -> Error {
        Error::Database(one_line(message))
    }

    /// A transient database error ([`Error::Unavailable`]), on one line.
    pub fn unavailable(message: impl fmt::Display) -> Error {
        Error::Unavailable(one_line(message))
    }
}

fn one_line(message: impl fmt::Display) -> String {
    message
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a failed step is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepErrorKind {
    /// Tried again with backoff while retries remain (the default).
    Retriable,
    /// Never tried again: the error goes straight to the function body.
    Fatal,
}

/// A step's failure. Retriable unless made with [`StepError::fatal`].
///
/// Any `std::error::Error + Send + Sync + 'static` converts into a retriable
/// `StepError`, so `?` works inside a step body:
///
/// ```
/// use flow_core::StepError;
/// fn parse(s: &str) -> Result<i64, StepError> {
///     let n: i64 = s.parse()?; // ParseIntError becomes a retriable StepError
///     if n < 0 { return Err(StepError::fatal("negative ids are never valid")); }
///     Ok(n)
/// }
/// # assert!(parse("x").is_err());
/// ```
///
/// `StepError` deliberately does not implement `std::error::Error` (like
/// `anyhow::Error`), so that the blanket conversion above can exist.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepError {
    message: String,
    kind: StepErrorKind,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_millis")]
    retry_after: Option<Duration>,
    /// The step that returned it as its final error (set by the engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    step: Option<String>,
}

impl StepError {
    /// A failure worth another attempt.
    pub fn retriable(error: impl fmt::Display) -> Self {
        StepError {
            message: error.to_string(),
            kind: StepErrorKind::Retriable,
            retry_after: None,
            step: None,
        }
    }

    /// A failure that no retry can fix: it reaches the function body at once.
    pub fn fatal(error: impl fmt::Display) -> Self {
        StepError {
            message: error.to_string(),
            kind: StepErrorKind::Fatal,
            retry_after: None,
            step: None,
        }
    }

    /// A retriable failure whose next attempt starts after `delay` (instead of the backoff).
    pub fn retry_after(error: impl fmt::Display, delay: Duration) -> Self {
        StepError {
            message: error.to_string(),
            kind: StepErrorKind::Retriable,
            retry_after: Some(delay),
            step: None,
        }
    }

    /// The failure's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the failure may be retried.
    pub fn kind(&self) -> StepErrorKind {
        self.kind
    }

    /// Whether this failure stops retries.
    pub fn is_fatal(&self) -> bool {
        self.kind == StepErrorKind::Fatal
    }

    /// The delay asked for by [`StepError::retry_after`].
    pub fn retry_delay(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The step whose final error this is, once a step returned it.
    pub fn step(&self) -> Option<&str> {
        self.step.as_deref()
    }

    /// The same error, as the final error of step `key`.
    pub(crate) fn in_step(mut self, key: &str) -> Self {
        self.step = Some(key.to_owned());
        self
    }

    /// The error as stored: JSON, its message made storable
    /// ([`storable_message`](crate::limits::storable_message)).
    pub(crate) fn to_stored(&self) -> serde_json::Value {
        let mut clean = self.clone();
        clean.message = crate::limits::storable_message(&self.message);
        serde_json::to_value(&clean).expect("a StepError serializes")
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for StepError {
    fn from(error: E) -> Self {
        StepError::retriable(error_chain(&error))
    }
}

/// What a `#[function]` handler returns on failure.
///
/// Converts from [`StepError`] and from any `std::error::Error`, so `?` works on both.
/// What happens next depends on where it came from: a step's final error (retries
/// ran out, or it was fatal) propagated with `?` fails the run at once; an error
/// of the handler's own code is retried with the function's retry policy, the body
/// replaying from its checkpoints; [`FlowError::fatal`] fails the run at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowError {
    message: String,
    /// The step whose final error this was, when it came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    step: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    fatal: bool,
}

impl FlowError {
    /// A failure with this message; the function's retry policy tries the body again.
    pub fn new(message: impl fmt::Display) -> Self {
        FlowError {
            message: message.to_string(),
            step: None,
            fatal: false,
        }
    }

    /// A failure no retry can fix: the run fails at once.
    pub fn fatal(message: impl fmt::Display) -> Self {
        FlowError {
            fatal: true,
            ..FlowError::new(message)
        }
    }

    /// Whether it fails the run without a retry ([`FlowError::fatal`]).
    pub fn is_fatal(&self) -> bool {
        self.fatal
    }

    /// The failure's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The step it came from: set when a step's final error was propagated.
    pub fn step(&self) -> Option<&str> {
        self.step.as_deref()
    }
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<StepError> for FlowError {
    fn from(error: StepError) -> Self {
        FlowError {
            message: error.message,
            step: error.step,
            fatal: false,
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for FlowError {
    fn from(error: E) -> Self {
        FlowError {
            message: error_chain(&error),
            step: None,
            fatal: false,
        }
    }
}

/// `outer: inner: innermost`, so the stored message keeps the causes.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_u64(d.as_millis() as u64),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// What a `#[step]` body may fail with: [`StepError`], or any `std::error::Error`
/// (retriable). Implement it for an error type of your own that is neither, to say
/// which of its values are worth a retry. `#[step]` converts the body's error
/// through it, so a type that cannot be converted is one error at the type.
///
/// ```
/// use flow_core::{StepError, StepFailure};
///
/// #[derive(Debug)]
/// enum Charge { Declined, Timeout }
///
/// impl StepFailure for Charge {
///     fn into_step_error(self) -> StepError {
///         match self {
///             Charge::Declined => StepError::fatal("card declined"),
///             Charge::Timeout => StepError::retriable("payment provider timed out"),
///         }
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "a step cannot fail with `{Self}`: a step fails with `StepError` or a type that implements `std::error::Error + Send + Sync + 'static`",
    label = "not an error a step can fail with",
    note = "write `Result<T, StepError>` and convert with `.map_err(StepError::retriable)` (or `StepError::fatal`), or implement `std::error::Error` or `flow::StepFailure` for your own type; handlers fail with `FlowError`, steps with `StepError`"
)]
pub trait StepFailure {
    /// The error as the step stores it.
    fn into_step_error(self) -> StepError;
}

// Not listed in errors: the trait's own message says what to write.
#[diagnostic::do_not_recommend]
impl StepFailure for StepError {
    fn into_step_error(self) -> StepError {
        self
    }
}

// Not listed in errors: the trait's own message says what to write.
#[diagnostic::do_not_recommend]
impl<E: std::error::Error + Send + Sync + 'static> StepFailure for E {
    fn into_step_error(self) -> StepError {
        StepError::from(self)
    }
}

/// What a `#[function]` handler may fail with: [`FlowError`], a step's
/// [`StepError`], or any `std::error::Error` (retried with the function's policy).
/// Implement it for an error type of your own that is neither.
#[diagnostic::on_unimplemented(
    message = "a #[function] handler cannot fail with `{Self}`: it fails with `FlowError` or a type that implements `std::error::Error + Send + Sync + 'static`",
    label = "not an error a handler can fail with",
    note = "write `Result<T, FlowError>`: `?` converts step errors and any `std::error::Error`; for other values use `FlowError::new(..)` (retried) or `FlowError::fatal(..)`, or implement `flow::HandlerFailure` for your own type"
)]
pub trait HandlerFailure {
    /// The error as the handler's outcome carries it.
    fn into_flow_error(self) -> FlowError;
}

// Not listed in errors: the trait's own message says what to write.
#[diagnostic::do_not_recommend]
impl HandlerFailure for FlowError {
    fn into_flow_error(self) -> FlowError {
        self
    }
}

// Not listed in errors: the trait's own message says what to write.
#[diagnostic::do_not_recommend]
impl HandlerFailure for StepError {
    fn into_flow_error(self) -> FlowError {
        FlowError::from(self)
    }
}

// Not listed in errors: the trait's own message says what to write.
#[diagnostic::do_not_recommend]
impl<E: std::error::Error + Send + Sync + 'static> HandlerFailure for E {
    fn into_flow_error(self) -> FlowError {
        FlowError::from(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn conversions_keep_the_cause_chain() {
        let e: StepError = Outer(std::io::Error::other("disk gone")).into();
        assert_eq!(e.message(), "outer: disk gone");
        assert!(!e.is_fatal());
        let f: FlowError = e.into();
        assert_eq!(f.message(), "outer: disk gone");
    }

    #[test]
    fn step_errors_round_trip_through_json() {
        let e = StepError::retry_after("rate limited", Duration::from_millis(1500));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["retry_after"], 1500);
        assert_eq!(serde_json::from_value::<StepError>(json).unwrap(), e);
        let fatal = StepError::fatal("bad input");
        let back: StepError =
            serde_json::from_value(serde_json::to_value(&fatal).unwrap()).unwrap();
        assert!(back.is_fatal());
    }
}
