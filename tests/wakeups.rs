//! Wake-ups: a send must not be missed while a worker's LISTEN is still being set
//! up (it would wait for the fallback poll, an hour in tests).

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use flow::prelude::*;
use flow::store::{
    Checkpoints, ClaimRequest, ClaimedRun, Committed, FunctionInfo, Lease, NewSignal, ReadStore,
    SignalReceipt, Store, Transition, Wakeups,
};
use flow::{AnyStore, NewEvent, Now, RunId, RunView, SendReceipt};

/// The real PostgreSQL store, whose notifications start only after a delay.
#[derive(Clone)]
struct LateListener(AnyStore);

impl Store for LateListener {
    fn describe(&self) -> String {
        self.0.describe()
    }
    async fn register_functions(&self, f: &[FunctionInfo], now: Now) -> Result<(), flow::Error> {
        self.0.register_functions(f, now).await
    }
    async fn keep_announced(&self, f: &[FunctionInfo], now: Now) -> Result<(), flow::Error> {
        self.0.keep_announced(f, now).await
    }
    async fn latest_event(
        &self,
        name: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, flow::Error> {
        self.0.latest_event(name).await
    }
    async fn send(&self, e: Vec<NewEvent>, now: Now) -> Result<SendReceipt, flow::Error> {
        self.0.send(e, now).await
    }
    async fn signal(&self, s: NewSignal, now: Now) -> Result<Option<SignalReceipt>, flow::Error> {
        self.0.signal(s, now).await
    }
    async fn set_paused(&self, f: &str, paused: bool, now: Now) -> Result<bool, flow::Error> {
        self.0.set_paused(f, paused, now).await
    }
    async fn claim(&self, r: ClaimRequest<'_>, now: Now) -> Result<Vec<ClaimedRun>, flow::Error> {
        self.0.claim(r, now).await
    }
    async fn load(&self, run: RunId) -> Result<Checkpoints, flow::Error> {
        self.0.load(run).await
    }
    async fn rerun(&self, run: RunId, now: flow::Now) -> Result<RunId, flow::Error> {
        self.0.rerun(run, now).await
    }
    async fn group_events(&self, run: RunId) -> Result<Vec<flow::StoredEvent>, flow::Error> {
        self.0.group_events(run).await
    }
    async fn commit(
        &self,
        b: &[(Lease, Transition)],
        d: Duration,
        now: Now,
    ) -> Result<Vec<Committed>, flow::Error> {
        self.0.commit(b, d, now).await
    }
    async fn renew(&self, l: &[Lease], d: Duration, now: Now) -> Result<Vec<RunId>, flow::Error> {
        self.0.renew(l, d, now).await
    }
    async fn recover_expired(&self, max: u32, now: Now) -> Result<u64, flow::Error> {
        self.0.recover_expired(max, now).await
    }
    async fn next_wakeup(
        &self,
        f: &[String],
        limited: &flow::flow_control::Limited,
    ) -> Result<Option<DateTime<Utc>>, flow::Error> {
        self.0.next_wakeup(f, limited).await
    }
    async fn settle_blocked(
        &self,
        run: RunId,
        settle: &flow::store::Settle,
        now: Now,
    ) -> Result<bool, flow::Error> {
        self.0.settle_blocked(run, settle, now).await
    }
    async fn cancel_timed_out(&self, now: Now) -> Result<u64, flow::Error> {
        self.0.cancel_timed_out(now).await
    }
    async fn cancel(&self, run: RunId, reason: &str, now: Now) -> Result<bool, flow::Error> {
        self.0.cancel(run, reason, now).await
    }
    async fn cancel_runs(
        &self,
        function: &str,
        created: std::ops::Range<chrono::DateTime<chrono::Utc>>,
        reason: &str,
        now: Now,
    ) -> Result<u64, flow::Error> {
        self.0.cancel_runs(function, created, reason, now).await
    }

    async fn database_time(&self) -> Result<chrono::DateTime<chrono::Utc>, flow::Error> {
        self.0.database_time().await
    }

    async fn wakeups(&self) -> Result<Wakeups, flow::Error> {
        tokio::time::sleep(Duration::from_millis(800)).await;
        self.0.wakeups().await
    }
}

impl ReadStore for LateListener {
    async fn run(&self, id: RunId) -> Result<Option<RunView>, flow::Error> {
        self.0.run(id).await
    }
    async fn functions(&self) -> Result<Vec<flow::FunctionView>, flow::Error> {
        self.0.functions().await
    }
    async fn runs(
        &self,
        query: &flow::store::RunQuery,
    ) -> Result<flow::store::RunPage, flow::Error> {
        self.0.runs(query).await
    }
    async fn events(
        &self,
        query: &flow::store::EventQuery,
    ) -> Result<flow::store::EventPage, flow::Error> {
        self.0.events(query).await
    }
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/early")]
struct Early {}

#[function(event = "test/early")]
async fn early(_ctx: &Ctx, _event: Early) -> Result<(), FlowError> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_while_the_worker_is_not_yet_listening_is_not_missed() {
    let (store, _) = common::store().await;
    let worker = flow_core::Worker::builder(LateListener(store.clone()))
        .register::<early>()
        .poll_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    worker.announce().await.unwrap();
    let running = worker.spawn();
    // The worker has looked for work, found none, and gone idle; it is not listening yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = flow::Client::new(store);
    let run = client.send(Early {}).await.unwrap().runs[0].1;
    let view = client.wait(run, Duration::from_secs(30)).await.unwrap();
    assert_eq!(view.status, flow::RunStatus::Completed);
    running.stop().await.unwrap();
}
