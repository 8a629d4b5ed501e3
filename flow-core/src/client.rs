//! The [`Client`]: sends events and reads runs back.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::{
    Connect, FinishWatch, NewSignal, ReadStore, SendReceipt, Settle, SignalReceipt, Store,
};
use crate::{Clock, Error, IntoEvent, Limits, NewEvent, RunId, RunStatus, RunView, SystemClock};

/// Sends events and reads runs. Cheap to clone.
///
/// ```no_run
/// # async fn demo(client: flow_core::Client<impl flow_core::Store + flow_core::ReadStore>) -> Result<(), flow_core::Error> {
/// # #[derive(serde::Serialize, serde::Deserialize)] struct UserCreated { id: i64 }
/// # impl flow_core::Event for UserCreated { const NAME: &'static str = "app/user.created"; }
/// let receipt = client.send(UserCreated { id: 7 }).await?;
/// for (_, run) in &receipt.runs {
///     let view = client.wait(*run, std::time::Duration::from_secs(30)).await?;
///     println!("{} {}", view.function_id, view.status);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client<S> {
    store: S,
    clock: Arc<dyn Clock>,
    limits: Limits,
    /// Event names already reported as starting no run, so each is logged once.
    unmatched_logged: Arc<Mutex<HashSet<String>>>,
}

impl<S: Store> Client<S> {
    /// A client of `store`.
    pub fn new(store: S) -> Self {
        Client {
            store,
            clock: Arc::new(SystemClock),
            limits: Limits::DEFAULT,
            unmatched_logged: Arc::default(),
        }
    }

    /// Uses `clock` for event timestamps and the dedupe window.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Enforces these limits at send.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The limits enforced at send.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sends one event; every function it triggers gets a run.
    pub async fn send(&self, event: impl IntoEvent) -> Result<SendReceipt, Error> {
        self.send_batch([event]).await
    }

    /// Sends several events in one transaction.
    pub async fn send_batch<E: IntoEvent>(
        &self,
        events: impl IntoIterator<Item = E>,
    ) -> Result<SendReceipt, Error> {
        let events = prepare(events, &self.limits)?;
        let receipt = self.store.send(events, self.clock.store_now()).await?;
        for u in &receipt.unevaluated {
            tracing::warn!(event = %u.event, function = %u.function, problem = %u.problem,
                "a function's send-time rule could not be applied; its run started without it");
        }
        if !receipt.unmatched.is_empty() {
            let mut logged = self
                .unmatched_logged
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for name in &receipt.unmatched {
                if logged.insert(name.clone()) {
                    tracing::warn!(
                        event = %name,
                        "an event started no run: no worker has announced a function it \
                         triggers (start the workers first, or call Worker::announce)"
                    );
                }
            }
        }
        Ok(receipt)
    }

    /// Sends a signal to the one run waiting on `name`: its
    /// [`wait_for_signal`](crate::Ctx::wait_for_signal) returns `payload`, and it
    /// is woken. Returns that run. When no run waits on the name, nothing is
    /// stored and the error is [`Error::NoSignalWaiter`]
    /// ([`Client::signal_or_buffer`] keeps the signal instead).
    ///
    /// ```no_run
    /// # async fn demo(client: flow_core::Client<impl flow_core::Store + flow_core::ReadStore>) -> Result<(), flow_core::Error> {
    /// let run = client.signal("approval/order-7", serde_json::json!({ "approved": true })).await?;
    /// # Ok(()) }
    /// ```
    pub async fn signal(&self, name: &str, payload: impl Serialize) -> Result<RunId, Error> {
        match self.send_signal(name, payload, false).await? {
            Some(SignalReceipt::Delivered(run)) => Ok(run),
            _ => Err(Error::NoSignalWaiter {
                name: name.to_owned(),
            }),
        }
    }

    /// [`Client::signal`], but a signal that finds no run waiting on `name` is
    /// kept: the next run to wait on the name takes it at once (several kept
    /// under one name are taken oldest first, one per wait).
    pub async fn signal_or_buffer(
        &self,
        name: &str,
        payload: impl Serialize,
    ) -> Result<SignalReceipt, Error> {
        let receipt = self.send_signal(name, payload, true).await?;
        receipt.ok_or_else(|| {
            Error::Database(format!(
                "the store neither delivered nor kept signal `{name}`, though asked to keep it"
            ))
        })
    }

    async fn send_signal(
        &self,
        name: &str,
        payload: impl Serialize,
        buffer: bool,
    ) -> Result<Option<SignalReceipt>, Error> {
        if let Some(problem) = crate::limits::signal_name_problem(name) {
            return Err(Error::InvalidSignal(problem));
        }
        let data = serde_json::to_value(payload).map_err(|e| {
            Error::InvalidSignal(format!(
                "the payload of signal `{name}` does not serialize: {e}"
            ))
        })?;
        self.limits.check_signal(name, &data)?;
        let signal = NewSignal {
            name: name.to_owned(),
            data,
            buffer,
        };
        self.store.signal(signal, self.clock.store_now()).await
    }
}

impl<S: Store + ReadStore> Client<S> {
    /// Pauses a function: its runs are held, not skipped. Events keep arriving
    /// and create runs, and sleeps, waits and retries come due, but no worker
    /// starts or resumes a run of it until [`Client::resume`]; a run executing
    /// meanwhile goes on to its next park or end. Holds across every worker
    /// process (the database refuses the claims). Pausing a paused function
    /// changes nothing; an unknown one is [`Error::FunctionNotFound`].
    pub async fn pause(&self, function: &str) -> Result<(), Error> {
        self.set_paused(function, true).await
    }

    /// Resumes a paused function: its held runs are taken up in their order.
    pub async fn resume(&self, function: &str) -> Result<(), Error> {
        self.set_paused(function, false).await
    }

    async fn set_paused(&self, function: &str, paused: bool) -> Result<(), Error> {
        // No function id holds a NUL, which the database would refuse as text.
        if function.contains('\0') {
            return Err(Error::FunctionNotFound(function.replace('\0', "\\u0000")));
        }
        match self
            .store
            .set_paused(function, paused, self.clock.store_now())
            .await?
        {
            true => Ok(()),
            false => Err(Error::FunctionNotFound(function.to_owned())),
        }
    }

    /// Ends a [blocked](RunStatus::Blocked) run by an operator's decision, failing
    /// or cancelling it with a reason (kept beside the error it was blocked with),
    /// and returns it. Refused, changing nothing, when the run is not blocked: it
    /// does not exist, has ended, or a worker has resumed it meanwhile.
    ///
    /// ```no_run
    /// # async fn demo(client: flow_core::Client<impl flow_core::Store + flow_core::ReadStore>, run: flow_core::RunId) -> Result<(), flow_core::Error> {
    /// use flow_core::store::Settle;
    /// client.settle_blocked(run, Settle::Cancel("order refunded by hand".into())).await?;
    /// # Ok(()) }
    /// ```
    pub async fn settle_blocked(&self, id: RunId, settle: Settle) -> Result<RunView, Error> {
        let settled = self
            .store
            .settle_blocked(id, &settle, self.clock.store_now())
            .await?;
        self.changed_or(id, settled, |status| Error::NotBlocked { run: id, status })
            .await
    }

    /// Cancels a run that has not ended and returns it, whatever it is doing: a
    /// queued, sleeping or blocked run never runs again; a running one finishes
    /// the step body it is in (whose result is then not kept), and no step starts
    /// after the cancel. The run ends `cancelled` with `reason` as its error.
    /// Refused, changing nothing, when the run does not exist or has ended.
    ///
    /// ```no_run
    /// # async fn demo(client: flow_core::Client<impl flow_core::Store + flow_core::ReadStore>, run: flow_core::RunId) -> Result<(), flow_core::Error> {
    /// client.cancel(run, "the customer closed the order").await?;
    /// # Ok(()) }
    /// ```
    pub async fn cancel(&self, id: RunId, reason: impl Into<String>) -> Result<RunView, Error> {
        let reason = cancel_reason(reason.into());
        let cancelled = self
            .store
            .cancel(id, &reason, self.clock.store_now())
            .await?;
        self.changed_or(id, cancelled, |status| Error::AlreadyEnded {
            run: id,
            status,
        })
        .await
    }

    /// Runs an ended run again: a new run of its function with the same event,
    /// from the start (its checkpoints are not reused). Returns the new run.
    pub async fn rerun(&self, id: RunId) -> Result<RunId, Error> {
        self.store.rerun(id, self.clock.store_now()).await
    }

    /// Cancels every run of `function` created in `created` (its start included,
    /// its end not) that has not ended, as [`Client::cancel`] does one; returns how
    /// many it cancelled.
    ///
    /// ```no_run
    /// # async fn demo(client: flow_core::Client<impl flow_core::Store + flow_core::ReadStore>) -> Result<(), flow_core::Error> {
    /// let yesterday = chrono::Utc::now() - chrono::Duration::days(1);
    /// let n = client
    ///     .cancel_runs("send_newsletter", yesterday..chrono::Utc::now(), "sent by mistake")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn cancel_runs(
        &self,
        function: &str,
        created: std::ops::Range<chrono::DateTime<chrono::Utc>>,
        reason: impl Into<String>,
    ) -> Result<u64, Error> {
        if created.start >= created.end {
            return Err(Error::Config(format!(
                "cancel_runs takes a time range whose start ({}) is before its end ({})",
                created.start, created.end
            )));
        }
        let reason = cancel_reason(reason.into());
        self.store
            .cancel_runs(function, created, &reason, self.clock.store_now())
            .await
    }

    /// The run after a change the store made (`changed`), or the error `refused`
    /// builds from its status when the store changed nothing.
    async fn changed_or(
        &self,
        id: RunId,
        changed: bool,
        refused: impl FnOnce(crate::RunStatus) -> Error,
    ) -> Result<RunView, Error> {
        match self.store.run(id).await? {
            Some(view) if changed => Ok(view),
            Some(view) => Err(refused(view.status)),
            None => Err(Error::RunNotFound(id)),
        }
    }
}

/// The error a cancelled run keeps: `cancelled: <reason>`, storable as every
/// error message is (no NUL, at most `ERROR_MESSAGE_BYTES`).
fn cancel_reason(reason: String) -> String {
    crate::storable_message(&format!("cancelled: {reason}"))
}

impl<S: ReadStore> Client<S> {
    /// A run with its steps, if it exists.
    pub async fn run(&self, id: RunId) -> Result<Option<RunView>, Error> {
        self.store.run(id).await
    }

    /// Waits until a run has finished (completed, failed or cancelled), for at most `timeout`.
    /// A transient database error (a connection the server dropped) is retried
    /// until the timeout; the last one is returned if it never passes.
    ///
    /// Where the store announces finishes ([`ReadStore::watch_finish`]), the run is
    /// read again as soon as its finish is announced, and otherwise polled at
    /// most every second as a backstop; else it is polled with backoff up to
    /// every 200 ms.
    pub async fn wait(&self, id: RunId, timeout: Duration) -> Result<RunView, Error> {
        let started = tokio::time::Instant::now();
        // Watched once the run is seen unfinished (a finished run costs one read),
        // then read again at once: a finish before the watch began is seen then,
        // and one after it is announced.
        let mut watch = FinishWatch::none(id);
        let mut watching = false;
        let mut pause = Duration::from_millis(2);
        loop {
            let status = match self.store.run(id).await {
                Ok(Some(view)) if view.status.is_finished() => return Ok(view),
                Ok(Some(view)) => Some(view.status),
                Ok(None) => return Err(Error::RunNotFound(id)),
                Err(e) if e.is_transient() && started.elapsed() < timeout => {
                    tracing::debug!(error = %e, "reading the run failed transiently; retrying");
                    None
                }
                Err(e) => return Err(e),
            };
            if let Some(status) = status
                && started.elapsed() >= timeout
            {
                return Err(Error::Timeout {
                    run: id,
                    waited: timeout,
                    status,
                });
            }
            if status.is_some() && !watching {
                watching = true;
                watch = self.store.watch_finish(id).await.unwrap_or_else(|e| {
                    tracing::debug!(error = %e, "cannot watch for the run's finish; polling");
                    FinishWatch::none(id)
                });
                continue;
            }
            let longest = if watch.announces() {
                Duration::from_secs(1)
            } else {
                Duration::from_millis(200)
            };
            let left = timeout.saturating_sub(started.elapsed());
            tokio::select! {
                () = watch.announced(), if status.is_some() => {}
                () = tokio::time::sleep(pause.min(left)) => {}
            }
            pause = (pause * 2).min(longest);
        }
    }

    /// A page of the runs `query` selects, newest first; the next page is the
    /// same query with [`RunQuery::after`](crate::store::RunQuery::after) set to
    /// this page's `next`.
    pub async fn runs(
        &self,
        query: &crate::store::RunQuery,
    ) -> Result<crate::store::RunPage, Error> {
        query.check()?;
        self.store.runs(query).await
    }

    /// A page of the events `query` selects, newest first.
    pub async fn events(
        &self,
        query: &crate::store::EventQuery,
    ) -> Result<crate::store::EventPage, Error> {
        query.check()?;
        self.store.events(query).await
    }

    /// The functions workers have announced, by id, with whether each is paused.
    pub async fn functions(&self) -> Result<Vec<crate::FunctionView>, Error> {
        self.store.functions().await
    }

    /// Waits for a run and returns its output, or [`Error::RunFailed`].
    pub async fn result<T: DeserializeOwned>(
        &self,
        id: RunId,
        timeout: Duration,
    ) -> Result<T, Error> {
        let view = self.wait(id, timeout).await?;
        match view.status {
            RunStatus::Completed => serde_json::from_value(view.output.unwrap_or_default())
                .map_err(|e| {
                    Error::Serde(format!("the output of run {id} does not deserialize: {e}"))
                }),
            status => Err(Error::RunFailed {
                run: id,
                status,
                message: view.error.unwrap_or_default(),
            }),
        }
    }
}

impl<S: Connect> Client<S> {
    /// A client of the store at `url`.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Ok(Client::new(S::connect(url).await?))
    }

    /// A client of the database named by `DATABASE_URL` (or the backend's default).
    pub async fn from_env() -> Result<Self, Error> {
        Client::connect(&crate::worker::env_url::<S>()?).await
    }
}

/// Converts events and enforces the send limits, so nothing oversized reaches a
/// store. Backends' transaction-taking sends call this too.
pub fn prepare<E: IntoEvent>(
    events: impl IntoIterator<Item = E>,
    limits: &Limits,
) -> Result<Vec<NewEvent>, Error> {
    let events = events
        .into_iter()
        .map(IntoEvent::into_event)
        .collect::<Result<Vec<_>, _>>()?;
    limits.check_send_count(events.len())?;
    for event in &events {
        crate::system::check_not_reserved(event.name()).map_err(Error::InvalidEvent)?;
        limits.check_event(event.name(), crate::run::core::json_len(event.data()))?;
        if let Some(path) = crate::limits::find_nul(event.data()) {
            return Err(Error::InvalidEvent(format!(
                "the data of event `{}` holds a NUL character (\\u0000) at `{path}`, which \
                 the database cannot store; remove it or encode the bytes (for example as base64)",
                event.name()
            )));
        }
        if let Some(ts) = event.timestamp()
            && ts > chrono::Utc::now() + crate::MAX_WAIT
        {
            return Err(Error::InvalidEvent(format!(
                "event `{}` has a timestamp ({ts}) more than 366 days ahead; an event's \
                 runs start at its timestamp when it is in the future, and a run can be \
                 delayed by at most 366 days",
                event.name()
            )));
        }
        if let Some(id) = event.producer_id() {
            if id.is_empty() || id.len() > 256 {
                return Err(Error::InvalidEvent(format!(
                    "event `{}` has a producer id of {} bytes; ids must be 1 to 256 bytes",
                    event.name(),
                    id.len()
                )));
            }
            if id.contains('\0') {
                return Err(Error::InvalidEvent(format!(
                    "event `{}` has a producer id with a NUL character (\\u0000), which the \
                     database cannot store",
                    event.name()
                )));
            }
        }
    }
    Ok(events)
}
