//! # flow: durable execution for Rust
//!
//! Annotate async functions with `#[function(event = "...")]` and `#[step]`: they
//! become event-driven workflows whose steps are checkpointed in PostgreSQL (or an
//! embedded SQLite file), retried alone when they fail, able to sleep for days, and
//! resumed on any worker after a crash.
//!
//! ```no_run
//! use flow::prelude::*;
//!
//! #[derive(Event, Serialize, Deserialize)]
//! #[event(name = "app/user.created")]
//! struct UserCreated { id: i64, email: String }
//!
//! #[step(retries = 3)]
//! async fn send_welcome(ctx: &Ctx, email: &str) -> Result<String, StepError> {
//!     Ok(format!("sent to {email}")) // real I/O goes here
//! }
//!
//! #[function(event = "app/user.created")]
//! async fn onboard(ctx: &Ctx, event: UserCreated) -> Result<String, FlowError> {
//!     let receipt = send_welcome(ctx, &event.email).await?;
//!     ctx.sleep("follow-up", Duration::from_secs(3 * 86_400)).await?;
//!     Ok(receipt)
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), flow::Error> {
//!     flow::Worker::from_env().await?.run().await?;
//!     Ok(())
//! }
//! ```
//!
//! See the README and docs/ARCHITECTURE.md for the semantics.

#[cfg(not(any(feature = "postgres", feature = "sqlite")))]
compile_error!(
    "flow needs a backend: enable the `postgres` or the `sqlite` feature (both are on by default)"
);

mod backend;

pub use backend::AnyStore;
#[cfg(feature = "sqlite")]
pub use backend::DEFAULT_SQLITE_URL;
#[cfg(feature = "postgres")]
pub use backend::SendInTransaction;
pub use flow_core::{
    AttemptView, Backoff, BackoffOverride, Branch, CancelOn, Clock, Connect, CronTick, Ctx,
    DEFAULT_CONCURRENCY, ERROR_MESSAGE_BYTES, Error, Event, EventFields, EventId, Failure,
    FailureKind, Field, First2, First3, First4, FirstOf, FlowError, Function, FunctionDef,
    FunctionView, HandlerFailure, HandlerOutcome, IntoEvent, IntoEvents, Invocation, Invoke,
    Limits, LostLease, MATCH_VALUE_BYTES, MAX_WAIT, ManualClock, NewEvent, Now, ReadStore, RunId,
    RunStatus, RunView, RunningWorker, SIGNAL_NAME_BYTES, SendEvent, SendReceipt, SignalReceipt,
    Sleep, StartsSteps, StepCall, StepCtx, StepError, StepErrorKind, StepFailure, StepKind,
    StepOptions, StepView, Storable, Store, StoredEvent, SystemClock, Timeout, TimeoutMissing,
    Timeouts, Triggers, WaitForEvent, WaitForSignal, WorkerBuilder, WorkerConfig, WorkerReport,
    registered,
};
// The derive macro `Event` beside the trait `Event` (another namespace), as serde does.
pub use flow_macros::{Event, Triggers, function, step};
#[cfg(feature = "postgres")]
pub use flow_postgres::{PgStore, PgStoreOptions};
#[cfg(feature = "sqlite")]
pub use flow_sqlite::SqliteStore;

/// The function catalog: the rules applied when an event is sent (`idempotency`),
/// and what a send's receipt says of them.
pub use flow_core::catalog;
/// Cron triggers: schedules, zones, and the tick a cron function receives.
pub use flow_core::cron;
/// Flow control: concurrency, run concurrency and throttle rules, and their keys.
pub use flow_core::flow_control;
/// Events gathered into one run: `batch_events(...)` and `debounce(...)`.
pub use flow_core::grouping;
/// The Store trait and its records, for backends and for tests that drive a store directly.
pub use flow_core::store;
/// flow's own events, sent when runs end: `flow/function.finished`, `.failed`, `.cancelled`.
pub use flow_core::system;

/// A worker on the backend `DATABASE_URL` names: `flow::Worker::from_env().await?.run().await`.
pub type Worker = flow_core::Worker<AnyStore>;

/// A client on the backend `DATABASE_URL` names: sends events and reads runs.
pub type Client = flow_core::Client<AnyStore>;

/// What a flow program needs in scope.
pub mod prelude {
    pub use crate::{CronTick, Ctx, Event, FlowError, StepError, Triggers, function, step};
    pub use serde::{Deserialize, Serialize};
    pub use std::time::Duration;
}

#[doc(hidden)]
pub use flow_core::__private;
