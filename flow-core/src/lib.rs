//! flow-core: the durable-execution engine behind [flow](https://docs.rs/flow).
//!
//! Events trigger functions; a function's steps are checkpointed in a [`Store`],
//! retried alone when they fail, and replayed from their checkpoints when a run
//! resumes on another worker. Users depend on the `flow` facade crate; this crate
//! holds the engine and the [`Store`] trait that backends implement.

// Lets the macros' `::flow::__private::…` paths resolve inside this crate's own tests.
extern crate self as flow;

pub mod catalog;
mod client;
mod clock;
pub mod cron;
mod ctx;
mod error;
mod event;
mod expr;
pub mod flow_control;
mod function;
pub mod grouping;
mod limits;
mod retry;
mod run;
mod step;
pub mod store;
pub mod system;
#[cfg(feature = "testing")]
pub mod testing;
mod triggers;
mod worker;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use client::{Client, prepare};
pub use clock::{Clock, ManualClock, Now, SystemClock, later};
pub use cron::CronTick;
pub use ctx::{Ctx, SendEvent, StartsSteps, StepCtx};
pub use error::{Error, FlowError, HandlerFailure, StepError, StepErrorKind, StepFailure};
pub use event::{
    Event, EventFields, Field, IntoEvent, IntoEvents, NewEvent, StoredEvent, check_name,
};
pub use function::{
    CancelOn, Function, FunctionDef, HandlerOutcome, MAX_CANCEL_ON, Registry, Timeouts, registered,
};
pub use limits::{
    ERROR_MESSAGE_BYTES, Limits, MATCH_VALUE_BYTES, SIGNAL_NAME_BYTES, Storable, find_nul,
    signal_name_problem, storable_message,
};
pub use retry::{Backoff, BackoffOverride, DEFAULT_RETRIES, MAX_RETRIES, StepOptions};
pub use run::{
    AttemptView, EventId, FunctionView, LostLease, RunId, RunStatus, RunView, StepKind, StepView,
};
pub use step::{
    Branch, First2, First3, First4, FirstOf, HasTimeout, Invocation, Invoke, MAX_WAIT, Race,
    RaceEntry, Sleep, StepCall, Timeout, TimeoutMissing, WaitForEvent, WaitForSignal,
};
pub use store::{Connect, Failure, FailureKind, ReadStore, SendReceipt, SignalReceipt, Store};
pub use triggers::Triggers;
pub use worker::{
    DEFAULT_CONCURRENCY, RunningWorker, Worker, WorkerBuilder, WorkerConfig, WorkerReport,
    database_url_from_env,
};
