//! A store wrapper for tests that provoke faults or watch the writes: it wraps
//! the real store of the backend under test and changes, or notes, what reaches
//! it; the database's own answer does the rest.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use flow::store::{
    Checkpoints, ClaimRequest, ClaimedRun, Committed, FunctionInfo, Lease, NewSignal, Next,
    ReadStore, SignalReceipt, Store, Transition, Wakeups,
};
use flow::{AnyStore, NewEvent, Now, RunId, RunView, SendReceipt};

/// One transition as a commit carried it: its run, the keys of the steps it
/// recorded, and what came next.
#[derive(Clone, Debug)]
pub struct Written {
    pub run: RunId,
    pub steps: Vec<String>,
    pub next: Next,
}

/// The real store, with faults on its commits: the first `transient` commits that
/// carry a checkpoint fail as a dropped connection would, before reaching the
/// database; a step key `poison` reaches the database with a NUL character in it,
/// which PostgreSQL refuses.
#[derive(Clone)]
pub struct Faulty {
    pub inner: AnyStore,
    pub transient: Arc<AtomicU32>,
    /// Renewals fail, as they do for a worker cut off from the database.
    pub renewals_fail: bool,
    /// The next this many reads of a run fail transiently.
    pub failing_reads: Arc<AtomicU32>,
    /// Every commit that reached the store, one entry per transition, in order.
    pub commits: Arc<Mutex<Vec<Vec<Written>>>>,
    /// Every next-due-time read, in order.
    pub next_wakeups: Arc<Mutex<Vec<NextWakeupRead>>>,
    /// The next this many claims fail transiently.
    pub failing_claims: Arc<AtomicU32>,
    /// When each claim was asked for.
    pub claims: Arc<Mutex<Vec<std::time::Instant>>>,
}

/// A next-due-time read: the database's time before it, and what it returned.
pub type NextWakeupRead = (DateTime<Utc>, Option<DateTime<Utc>>);

impl Faulty {
    pub fn new(inner: AnyStore, transient: u32) -> Self {
        Faulty {
            inner,
            transient: Arc::new(AtomicU32::new(transient)),
            renewals_fail: false,
            failing_reads: Arc::new(AtomicU32::new(0)),
            commits: Arc::default(),
            next_wakeups: Arc::default(),
            failing_claims: Arc::new(AtomicU32::new(0)),
            claims: Arc::default(),
        }
    }
}

impl Store for Faulty {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn register_functions(&self, f: &[FunctionInfo], now: Now) -> Result<(), flow::Error> {
        self.inner.register_functions(f, now).await
    }
    async fn keep_announced(&self, f: &[FunctionInfo], now: Now) -> Result<(), flow::Error> {
        self.inner.keep_announced(f, now).await
    }
    async fn latest_event(&self, name: &str) -> Result<Option<DateTime<Utc>>, flow::Error> {
        self.inner.latest_event(name).await
    }
    async fn send(&self, e: Vec<NewEvent>, now: Now) -> Result<SendReceipt, flow::Error> {
        self.inner.send(e, now).await
    }
    async fn signal(&self, s: NewSignal, now: Now) -> Result<Option<SignalReceipt>, flow::Error> {
        self.inner.signal(s, now).await
    }
    async fn set_paused(&self, f: &str, paused: bool, now: Now) -> Result<bool, flow::Error> {
        self.inner.set_paused(f, paused, now).await
    }
    async fn claim(&self, r: ClaimRequest<'_>, now: Now) -> Result<Vec<ClaimedRun>, flow::Error> {
        self.claims.lock().unwrap().push(std::time::Instant::now());
        let failing = &self.failing_claims;
        if failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(flow::Error::Unavailable(
                "connection refused (injected by the test)".into(),
            ));
        }
        self.inner.claim(r, now).await
    }
    async fn load(&self, run: RunId) -> Result<Checkpoints, flow::Error> {
        self.inner.load(run).await
    }
    async fn rerun(&self, run: RunId, now: flow::Now) -> Result<RunId, flow::Error> {
        self.inner.rerun(run, now).await
    }
    async fn group_events(&self, run: RunId) -> Result<Vec<flow::StoredEvent>, flow::Error> {
        self.inner.group_events(run).await
    }
    async fn commit(
        &self,
        batch: &[(Lease, Transition)],
        lease_for: Duration,
        now: Now,
    ) -> Result<Vec<Committed>, flow::Error> {
        let checkpoints = batch.iter().any(|(_, t)| !t.steps.is_empty());
        if checkpoints
            && self
                .transient
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(flow::Error::Unavailable(
                "connection reset by peer (injected by the test)".into(),
            ));
        }
        self.commits.lock().unwrap().push(
            batch
                .iter()
                .map(|(lease, t)| Written {
                    run: lease.run_id,
                    steps: t.steps.iter().map(|s| s.key.clone()).collect(),
                    next: t.next.clone(),
                })
                .collect(),
        );
        let mut batch = batch.to_vec();
        for (_, t) in &mut batch {
            for step in &mut t.steps {
                if step.key == "poison" {
                    step.key = "poison\0".into();
                }
            }
        }
        self.inner.commit(&batch, lease_for, now).await
    }
    async fn renew(&self, l: &[Lease], d: Duration, now: Now) -> Result<Vec<RunId>, flow::Error> {
        if self.renewals_fail {
            return Err(flow::Error::Unavailable(
                "connection refused (injected by the test)".into(),
            ));
        }
        self.inner.renew(l, d, now).await
    }
    async fn recover_expired(&self, max: u32, now: Now) -> Result<u64, flow::Error> {
        self.inner.recover_expired(max, now).await
    }
    async fn next_wakeup(
        &self,
        f: &[String],
        limited: &flow::flow_control::Limited,
    ) -> Result<Option<DateTime<Utc>>, flow::Error> {
        let before = self.inner.database_time().await?;
        let next = self.inner.next_wakeup(f, limited).await?;
        self.next_wakeups.lock().unwrap().push((before, next));
        Ok(next)
    }
    async fn settle_blocked(
        &self,
        run: RunId,
        settle: &flow::store::Settle,
        now: Now,
    ) -> Result<bool, flow::Error> {
        self.inner.settle_blocked(run, settle, now).await
    }
    async fn cancel_timed_out(&self, now: Now) -> Result<u64, flow::Error> {
        self.inner.cancel_timed_out(now).await
    }
    async fn cancel(&self, run: RunId, reason: &str, now: Now) -> Result<bool, flow::Error> {
        self.inner.cancel(run, reason, now).await
    }
    async fn cancel_runs(
        &self,
        function: &str,
        created: std::ops::Range<chrono::DateTime<chrono::Utc>>,
        reason: &str,
        now: Now,
    ) -> Result<u64, flow::Error> {
        self.inner.cancel_runs(function, created, reason, now).await
    }

    async fn database_time(&self) -> Result<chrono::DateTime<chrono::Utc>, flow::Error> {
        self.inner.database_time().await
    }

    async fn wakeups(&self) -> Result<Wakeups, flow::Error> {
        self.inner.wakeups().await
    }
}

impl ReadStore for Faulty {
    async fn functions(&self) -> Result<Vec<flow::FunctionView>, flow::Error> {
        self.inner.functions().await
    }
    async fn runs(
        &self,
        query: &flow::store::RunQuery,
    ) -> Result<flow::store::RunPage, flow::Error> {
        self.inner.runs(query).await
    }
    async fn events(
        &self,
        query: &flow::store::EventQuery,
    ) -> Result<flow::store::EventPage, flow::Error> {
        self.inner.events(query).await
    }
    async fn run(&self, id: RunId) -> Result<Option<RunView>, flow::Error> {
        if self
            .failing_reads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(flow::Error::Unavailable(
                "terminating connection due to administrator command (injected by the test)".into(),
            ));
        }
        self.inner.run(id).await
    }
}
