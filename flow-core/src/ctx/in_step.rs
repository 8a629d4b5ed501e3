//! [`StepCtx`]: the run's handle inside a `#[step]` body, and [`StartsSteps`]: what
//! a step is started from. A step's body runs once and its result is recorded, so
//! what the run journals (steps, durable sleeps, `now`, `uuid`, `random`) belongs
//! in the function's body, between steps. Inside a step's body each of these is a
//! compile error at the user's call that says so (the bounds below cannot hold),
//! rather than a run that fails when it gets there.

use std::future::{Future, Ready};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::{Ctx, EventId, RunId, StepError, StepOptions};

/// The run's handle inside a `#[step]` body: there, `ctx` is a `&StepCtx`. It says
/// which run and function the body works for. Steps, durable sleeps and the
/// journaled `now`, `uuid` and `random` cannot be called on it: call them from the
/// function's body, between steps.
///
/// A helper that a step body hands its `ctx` to takes `&StepCtx`.
pub struct StepCtx {
    ctx: Ctx,
}

impl StepCtx {
    pub(crate) fn of(ctx: &Ctx) -> StepCtx {
        StepCtx { ctx: ctx.clone() }
    }

    /// The run's id.
    pub fn run_id(&self) -> RunId {
        self.ctx.run_id()
    }

    /// The id of the function this run executes.
    pub fn function_id(&self) -> &'static str {
        self.ctx.function_id()
    }

    #[doc(hidden)]
    pub fn run<'a, T, E, F, Fut>(&'a self, _id: &str, _body: F) -> Ready<Result<T, StepError>>
    where
        &'a StepCtx: StepInAStep,
        T: Serialize + DeserializeOwned + Send + 'static,
        E: Into<StepError> + Send + 'a,
        F: FnOnce() -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, E>> + Send + 'a,
    {
        unreachable!("refused at compile time")
    }

    #[doc(hidden)]
    pub fn run_with<'a, T, E, F, Fut>(
        &'a self,
        _id: &str,
        _options: StepOptions,
        _body: F,
    ) -> Ready<Result<T, StepError>>
    where
        &'a StepCtx: StepInAStep,
        T: Serialize + DeserializeOwned + Send + 'static,
        E: Into<StepError> + Send + 'a,
        F: FnOnce() -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, E>> + Send + 'a,
    {
        unreachable!("refused at compile time")
    }

    #[doc(hidden)]
    pub fn sleep<'a>(&'a self, _id: &str, _duration: Duration) -> Ready<Result<(), StepError>>
    where
        &'a StepCtx: SleepInAStep,
    {
        unreachable!("refused at compile time")
    }

    #[doc(hidden)]
    pub fn sleep_until<'a>(
        &'a self,
        _id: &str,
        _until: DateTime<Utc>,
    ) -> Ready<Result<(), StepError>>
    where
        &'a StepCtx: SleepInAStep,
    {
        unreachable!("refused at compile time")
    }

    #[doc(hidden)]
    pub fn wait_for_event<'a, E>(&'a self, _id: &str) -> Ready<Result<Option<E>, StepError>>
    where
        &'a StepCtx: WaitInAStep,
    {
        unreachable!("refused at compile time")
    }

    #[doc(hidden)]
    pub fn send_event<'a, V>(
        &'a self,
        _id: &str,
        _events: V,
    ) -> Ready<Result<Vec<EventId>, StepError>>
    where
        &'a StepCtx: SendInAStep,
    {
        unreachable!("refused at compile time")
    }

    #[doc(hidden)]
    pub fn invoke<'a, I, T>(&'a self, _id: &str, _invocation: I) -> Ready<Result<T, StepError>>
    where
        &'a StepCtx: InvokeInAStep,
    {
        unreachable!("refused at compile time")
    }

    #[doc(hidden)]
    pub fn now<'a>(&'a self) -> Ready<DateTime<Utc>>
    where
        &'a StepCtx: NowInAStep,
    {
        unreachable!("refused at compile time")
    }

    #[doc(hidden)]
    pub fn uuid<'a>(&'a self) -> Uuid
    where
        &'a StepCtx: RandomInAStep,
    {
        unreachable!("refused at compile time")
    }

    #[doc(hidden)]
    pub fn random<'a>(&'a self) -> f64
    where
        &'a StepCtx: RandomInAStep,
    {
        unreachable!("refused at compile time")
    }
}

impl std::fmt::Debug for StepCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepCtx")
            .field("run_id", &self.run_id())
            .field("function_id", &self.function_id())
            .finish()
    }
}

/// What a `#[step]` is started from: the run's [`Ctx`] (or a reference to one). A
/// step body's [`StepCtx`] is not one, so a step called inside another step's body
/// is a compile error at the call.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot start a step: steps start from the function's `ctx: &Ctx`, and steps cannot nest",
    label = "a step's body cannot call a step: call it from the function's body, or make it a plain async fn"
)]
pub trait StartsSteps: Sync {
    #[doc(hidden)]
    fn starting_ctx(&self) -> &Ctx;
}

impl StartsSteps for Ctx {
    fn starting_ctx(&self) -> &Ctx {
        self
    }
}

#[diagnostic::do_not_recommend]
impl<T: StartsSteps + ?Sized> StartsSteps for &T {
    fn starting_ctx(&self) -> &Ctx {
        (**self).starting_ctx()
    }
}

/// Implemented by nothing a step's body has: `ctx.run` there is a compile error.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "steps cannot nest: `ctx.run` is called inside a step's body",
    label = "call `ctx.run` from the function's body, or do the work here directly"
)]
pub trait StepInAStep {}

/// Implemented by nothing a step's body has: a durable sleep there is a compile error.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "a step's body cannot sleep durably: the run cannot park while a step runs",
    label = "call `ctx.sleep` from the function's body between steps, or `tokio::time::sleep` for a short wait here"
)]
pub trait SleepInAStep {}

/// Implemented by nothing a step's body has: a wait for an event there is a
/// compile error.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "a step's body cannot wait for an event: the run cannot park while a step runs",
    label = "call `ctx.wait_for_event` from the function's body between steps"
)]
pub trait WaitInAStep {}

/// Implemented by nothing a step's body has: `ctx.send_event` there is a compile
/// error.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "a step's body cannot send events as a step: a retry of the body would send them again",
    label = "call `ctx.send_event` from the function's body between steps"
)]
pub trait SendInAStep {}

/// Implemented by nothing a step's body has: `ctx.invoke` there is a compile error.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "a step's body cannot invoke a function: the run cannot park while a step runs",
    label = "call `ctx.invoke` from the function's body between steps"
)]
pub trait InvokeInAStep {}

/// Implemented by nothing a step's body has: `ctx.now()` there is a compile error.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "a step's body runs once and its result is recorded, so it reads the clock directly",
    label = "write `chrono::Utc::now()` here, or call `ctx.now()` from the function's body"
)]
pub trait NowInAStep {}

/// Implemented by nothing a step's body has: `ctx.uuid()` and `ctx.random()` there
/// are compile errors.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "a step's body runs once and its result is recorded, so it needs no replayable randomness",
    label = "make ids and random numbers here directly (`uuid::Uuid::new_v4()`), or call this from the function's body"
)]
pub trait RandomInAStep {}

// Each refusal trait has one impl, for a type no step body has, so that rustc does
// not suggest implementing it; `do_not_recommend` keeps it out of the messages.
#[diagnostic::do_not_recommend]
impl StepInAStep for std::convert::Infallible {}
#[diagnostic::do_not_recommend]
impl SleepInAStep for std::convert::Infallible {}
#[diagnostic::do_not_recommend]
impl WaitInAStep for std::convert::Infallible {}
#[diagnostic::do_not_recommend]
impl SendInAStep for std::convert::Infallible {}
#[diagnostic::do_not_recommend]
impl InvokeInAStep for std::convert::Infallible {}
#[diagnostic::do_not_recommend]
impl NowInAStep for std::convert::Infallible {}
#[diagnostic::do_not_recommend]
impl RandomInAStep for std::convert::Infallible {}
