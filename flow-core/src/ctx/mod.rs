//! [`Ctx`]: a run's handle inside its handler, and (`in_step`) what a step's body
//! gets instead. The state behind both lives in `run::core`.

mod in_step;

pub use in_step::{StartsSteps, StepCtx};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::run::core::RunCore;
use crate::step::{FirstOf, Invocation, Invoke, Sleep, StepCall, WaitForEvent, WaitForSignal};
use crate::{Event, EventId, IntoEvents, RunId, StepError, StepKind, StepOptions};

/// A run's handle, the first parameter of every handler and step.
///
/// It is cheap to clone and `Send`, so steps work inside `tokio::spawn` and `join!`.
#[derive(Clone)]
pub struct Ctx {
    pub(crate) core: Arc<RunCore>,
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
        let call = StepCall::new(&self.core, id, options);
        async move { call.run_lazy(body).await }
    }

    /// Sleeps for `duration`, durably: the run is parked (no worker slot, no memory)
    /// and resumes on whichever worker is up when the time comes.
    ///
    /// Like a step, the sleep takes its place in the run's order when it is called,
    /// not when it is first awaited, and its duration counts from the call.
    pub fn sleep(&self, id: &str, duration: Duration) -> Sleep {
        let until = crate::clock::later(self.core.clock.now(), duration);
        self.sleep_until(id, until)
    }

    /// Sleeps until `until`, durably (see [`Ctx::sleep`]).
    pub fn sleep_until(&self, id: &str, until: DateTime<Utc>) -> Sleep {
        let call = StepCall::new_kind(&self.core, id, StepKind::Sleep, StepOptions::DEFAULT);
        Sleep::new(call, until)
    }

    /// Waits for an event of type `E`, durably: the run is parked (no worker slot,
    /// no memory) until a matching event is stored, or until the timeout, which
    /// every wait needs. It returns the event, or `None` on timeout; a replay
    /// returns what it returned live.
    ///
    /// An event stored after the run's last checkpoint counts, even if it came
    /// before the run reached the wait; [`lookback`](WaitForEvent::lookback)
    /// reaches further back. Like a step, the wait takes its place in the run's
    /// order, and its timeout counts, from the call.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # #[derive(serde::Serialize, serde::Deserialize)]
    /// # struct PaymentConfirmed { payment_id: String }
    /// # impl flow_core::Event for PaymentConfirmed { const NAME: &'static str = "app/payment.confirmed"; }
    /// # async fn demo(ctx: &flow_core::Ctx) -> Result<(), flow_core::StepError> {
    /// let confirmed: Option<PaymentConfirmed> = ctx
    ///     .wait_for_event::<PaymentConfirmed>("confirmation")
    ///     .timeout(Duration::from_secs(3600))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn wait_for_event<E: Event>(&self, id: &str) -> WaitForEvent<E, crate::TimeoutMissing> {
        let called_at = self.core.clock.now();
        WaitForEvent::new(
            StepCall::new_kind(&self.core, id, StepKind::Wait, StepOptions::DEFAULT),
            called_at,
        )
    }

    /// Waits for a signal sent to `name` with
    /// [`Client::signal`](crate::Client::signal), durably (the run is parked, as
    /// for [`wait_for_event`](Ctx::wait_for_event)), until the timeout, which every
    /// wait needs. It returns the signal's payload read as `T`, or `None` on
    /// timeout; a replay returns what it returned live.
    ///
    /// A signal goes to exactly one run: while this run waits on `name`, another
    /// run's wait on it fails at once with a fatal [`StepError`] naming this run.
    /// A signal sent before the wait is kept only if its sender asked
    /// ([`Client::signal_or_buffer`](crate::Client::signal_or_buffer)); the wait
    /// then returns it at once. Names are 1 to 256 bytes: make them unique per
    /// purpose and entity (`"approval/order-7"`).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # #[derive(serde::Deserialize)]
    /// # struct Approval { approved: bool }
    /// # async fn demo(ctx: &flow_core::Ctx, order: i64) -> Result<(), flow_core::StepError> {
    /// let approval: Option<Approval> = ctx
    ///     .wait_for_signal("approval", format!("approval/order-{order}"))
    ///     .timeout(Duration::from_secs(24 * 3600))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn wait_for_signal<T>(
        &self,
        id: &str,
        name: impl Into<String>,
    ) -> WaitForSignal<T, crate::TimeoutMissing> {
        let called_at = self.core.clock.now();
        WaitForSignal::new(
            StepCall::new_kind(&self.core, id, StepKind::Signal, StepOptions::DEFAULT),
            called_at,
            name.into(),
        )
    }

    /// Races step tools: waits for events or signals (with their timeouts),
    /// invokes and sleeps, two to four of them in a tuple. Returns the output of
    /// the one that finished first, as a [`First2`](crate::First2) (`First3`,
    /// `First4`) whose variant says which; a branch's error is the race's error.
    /// While none has finished, the run is parked on all of them (no worker slot,
    /// no memory) and wakes at the first.
    ///
    /// The winner is recorded as the step `id`: a replay returns the same branch,
    /// the losers are never polled again, and their waits are closed (a losing
    /// wait holds no event and no signal name, a losing invoke's run goes on
    /// unobserved). Branches that finished together (both events arrived while
    /// the run was parked) go to the first in the tuple. Use this, never
    /// `tokio::select!`, which records no winner.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Approved { order: i64 }
    /// # impl flow_core::Event for Approved { const NAME: &'static str = "app/order.approved"; }
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Rejected { order: i64 }
    /// # impl flow_core::Event for Rejected { const NAME: &'static str = "app/order.rejected"; }
    /// # async fn demo(ctx: &flow_core::Ctx) -> Result<(), flow_core::StepError> {
    /// use flow_core::First3;
    /// let day = Duration::from_secs(24 * 3600);
    /// let decision = ctx
    ///     .first_of("decision", (
    ///         ctx.wait_for_event::<Approved>("approved").timeout(day),
    ///         ctx.wait_for_event::<Rejected>("rejected").timeout(day),
    ///         ctx.sleep("give-up", day),
    ///     ))
    ///     .await?;
    /// match decision {
    ///     First3::A(approved) => { /* Some(event), or None at the timeout */ }
    ///     First3::B(rejected) => {}
    ///     First3::C(()) => { /* a day passed first */ }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn first_of<B: crate::step::Race>(&self, id: &str, branches: B) -> FirstOf<B> {
        let call = StepCall::new_kind(&self.core, id, StepKind::FirstOf, StepOptions::DEFAULT);
        FirstOf::new(call, branches)
    }

    /// Sends events as a step named `id`: they are stored, and start their runs,
    /// in the same commit that records the step, so a replay returns their ids and
    /// never sends them again. Takes one event or a `Vec` or array of them; events
    /// over the limits (or that do not serialize) are the step's error, fatal.
    ///
    /// An event that carries a producer id seen in the last 24 hours is dropped as
    /// a duplicate, as with [`Client::send`](crate::Client::send); its id in the
    /// result then names no stored event.
    ///
    /// ```no_run
    /// # #[derive(serde::Serialize, serde::Deserialize)]
    /// # struct InvoiceDue { customer: i64 }
    /// # impl flow_core::Event for InvoiceDue { const NAME: &'static str = "billing/invoice.due"; }
    /// # async fn demo(ctx: &flow_core::Ctx) -> Result<(), flow_core::StepError> {
    /// let customers = [7, 8, 9];
    /// let ids = ctx
    ///     .send_event("fan-out", customers.map(|customer| InvoiceDue { customer }))
    ///     .await?;
    /// assert_eq!(ids.len(), 3);
    /// # Ok(()) }
    /// ```
    pub fn send_event(&self, id: &str, events: impl IntoEvents) -> SendEvent {
        let events = events
            .into_events()
            .and_then(|events| crate::prepare(events, &self.core.limits));
        let call = StepCall::new_kind(&self.core, id, StepKind::SendEvent, StepOptions::DEFAULT);
        SendEvent(Box::pin(call.send(events)))
    }

    /// Runs another `#[function]` as a step named `id` and returns its output: a
    /// run of it starts when the parent parks (holding no worker meanwhile), and
    /// its end wakes the parent. The function's `with` fn makes the invocation,
    /// so the payload is checked against its event type when this compiles. Its
    /// run's failure, cancel or [timeout](crate::Invoke::timeout) is this step's
    /// error, fatal (not retried: the invoked run had its own retries).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use flow_core as flow;
    /// # #[derive(serde::Serialize, serde::Deserialize)]
    /// # struct Resize { width: u32 }
    /// # impl flow::Event for Resize { const NAME: &'static str = "img/resize"; }
    /// # #[allow(non_camel_case_types)] struct thumbnail;
    /// # impl thumbnail { fn with(e: Resize) -> flow::Invocation<String> { unimplemented!() } }
    /// # async fn demo(ctx: &flow::Ctx) -> Result<(), flow::StepError> {
    /// let path: String = ctx
    ///     .invoke("small", thumbnail::with(Resize { width: 100 }))
    ///     .timeout(Duration::from_secs(600))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn invoke<T>(&self, id: &str, invocation: Invocation<T>) -> Invoke<T> {
        let called_at = self.core.clock.now();
        let problem = invocation.payload_problem(&self.core.limits);
        Invoke::new(
            StepCall::new_kind(&self.core, id, StepKind::Invoke, StepOptions::DEFAULT),
            called_at,
            invocation,
            problem,
        )
    }

    /// The current time, journaled: recorded once, the same on every replay. It
    /// takes its place in the run's order when it is called.
    pub fn now(&self) -> impl Future<Output = DateTime<Utc>> + Send + use<> {
        StepCall::new_kind(&self.core, "now", StepKind::Now, StepOptions::DEFAULT).now()
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

/// A send made by [`Ctx::send_event`]: awaited, it returns the ids of the events
/// sent. A type of its own rather than `impl Future`, which would carry the
/// events' type (and report a wrong one three times).
#[must_use = "a send does nothing until it is awaited"]
pub struct SendEvent(Pin<Box<dyn Future<Output = Result<Vec<EventId>, StepError>> + Send>>);

impl Future for SendEvent {
    type Output = Result<Vec<EventId>, StepError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
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
