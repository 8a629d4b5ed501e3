//! The worker: claims due runs in batches, drives each on its own task (`driver`),
//! writes through one group commit (`committer`), renews its leases, recovers runs
//! of dead workers, and shuts down gracefully.

mod committer;
mod cron;
mod driver;

use crate::run::core::RunSettings;
use crate::run::writes::Committer;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::clock::{Reading, SyncedClock, later};
use crate::function::{Function, FunctionDef, Registry, registered};
use crate::run::core::{RunCore, Stop};
use crate::store::{ClaimRequest, ClaimedRun, Connect, FunctionInfo, Lease, Store, Wakeup};
use crate::{Clock, Error, Limits, RunId, SystemClock};
use driver::{Exit, drive};

/// Runs a worker drives at once unless told otherwise. Chosen by measurement
/// (docs/BENCHMARKS.md, stop 23): a worker's commits carry the writes of all of its
/// runs, so more slots mean fewer WAL flushes per step. One worker did 12,900
/// steps/s at 32 slots, 18,900 at 64, 25,900 at 128 (1.2x pgbench's best
/// single-row INSERT on the same server) and 31,900 at 256. 128 meets the target
/// with room, keeps what one worker takes from the queue (and holds while its
/// steps run) to 128 runs, under 1 MiB of memory, and opens no more connections.
pub const DEFAULT_CONCURRENCY: usize = 128;

/// Worker settings; every default is documented on its builder method.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Runs driven at once.
    pub concurrency: usize,
    /// How long a claimed run stays leased without a renewal.
    pub lease: Duration,
    /// How often all of this worker's leases are renewed (in one statement).
    pub renew_every: Duration,
    /// The longest an idle worker sleeps without checking for work.
    pub poll_interval: Duration,
    /// How long in-flight steps may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// After this many lost leases in a row without a new checkpoint a run fails.
    pub max_lost: u32,
    /// Size and count limits.
    pub limits: Limits,
    /// This worker's id (defaults to `host-pid-random`).
    pub worker_id: Option<String>,
}

impl WorkerConfig {
    /// Refuses settings that would make a worker spin or lose its runs.
    fn check(&self) -> Result<(), Error> {
        let positive = [
            ("lease", self.lease),
            ("renew_every", self.renew_every),
            ("poll_interval", self.poll_interval),
        ];
        for (name, value) in positive {
            if value.is_zero() {
                return Err(Error::Config(format!(
                    "WorkerBuilder::{name} must be longer than zero"
                )));
            }
        }
        let held = self.lease - crate::run::core::lease_margin(self.lease);
        if self.renew_every >= held {
            return Err(Error::Config(format!(
                "WorkerBuilder::renew_every ({:?}) must be shorter than four fifths of the \
                 lease ({:?}): a run stops a fifth of the lease before it lapses unless it \
                 was renewed; a third of the lease is usual",
                self.renew_every, self.lease
            )));
        }
        if let Some(id) = &self.worker_id
            && id.trim().is_empty()
        {
            return Err(Error::Config(
                "WorkerBuilder::worker_id cannot be empty".into(),
            ));
        }
        Ok(())
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: DEFAULT_CONCURRENCY,
            lease: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
            poll_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            max_lost: 10,
            limits: Limits::DEFAULT,
            worker_id: None,
        }
    }
}

/// Builds a [`Worker`].
pub struct WorkerBuilder<S> {
    store: S,
    config: WorkerConfig,
    clock: Arc<dyn Clock>,
    functions: Vec<&'static FunctionDef>,
}

impl<S: Store> WorkerBuilder<S> {
    /// Runs driven at once (default [`DEFAULT_CONCURRENCY`], 128).
    pub fn concurrency(mut self, runs: usize) -> Self {
        self.config.concurrency = runs.max(1);
        self
    }

    /// Lease length (default 30 s). A dead worker's runs move on after it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self
    }

    /// Lease renewal period (default 10 s); keep it well under the lease.
    pub fn renew_every(mut self, every: Duration) -> Self {
        self.config.renew_every = every;
        self
    }

    /// Fallback poll when no notification arrives (default 5 s).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.config.poll_interval = every;
        self
    }

    /// Time in-flight steps get to finish on shutdown (default 30 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// Lost leases in a row, without a new checkpoint, after which a run fails (default 10).
    pub fn max_lost(mut self, times: u32) -> Self {
        self.config.max_lost = times.max(1);
        self
    }

    /// Size and count limits (default [`Limits::DEFAULT`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// This worker's id, as leases record it.
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.config.worker_id = Some(id.into());
        self
    }

    /// The clock (default the system's); tests pass a [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Serves this function. Once any function is registered explicitly, only
    /// explicitly registered ones are served; otherwise every `#[function]` in the binary.
    pub fn register<F: Function>(self) -> Self {
        self.register_def(F::DEF)
    }

    /// Serves this function definition (see [`WorkerBuilder::register`]).
    pub fn register_def(mut self, def: &'static FunctionDef) -> Self {
        self.functions.push(def);
        self
    }

    /// The worker; fails when a setting is out of range, two functions share an
    /// id, or none is registered.
    pub fn build(self) -> Result<Worker<S>, Error> {
        self.config.check()?;
        let defs = if self.functions.is_empty() {
            registered()
        } else {
            self.functions
        };
        let registry = Registry::new(defs)?;
        if registry.is_empty() {
            return Err(Error::Config(
                "no functions to serve: define one with #[function(event = \"...\")] or \
                 register one with WorkerBuilder::register"
                    .into(),
            ));
        }
        let owner: Arc<str> = match &self.config.worker_id {
            Some(id) => id.as_str().into(),
            None => default_worker_id().into(),
        };
        let slots = self.config.concurrency;
        Ok(Worker {
            shared: Arc::new(Shared {
                store: self.store,
                registry,
                config: self.config,
                clock: Arc::new(SyncedClock::new(self.clock)),
                owner,
                runs: Mutex::new(HashMap::new()),
                wake: Notify::new(),
                work_now: AtomicBool::new(false),
                due_hint: Mutex::new(None),
                sleeping_until: AtomicI64::new(i64::MIN),
                last_recovery: AtomicI64::new(i64::MIN),
                last_heartbeat: AtomicI64::new(i64::MIN),
                shutting_down: AtomicBool::new(false),
                free: AtomicUsize::new(slots),
                more_due: AtomicBool::new(true),
                committing: AtomicBool::new(false),
                handed: Mutex::new(Vec::new()),
            }),
        })
    }
}

/// A worker process's engine: `Worker::from_env().await?.run().await`.
pub struct Worker<S> {
    shared: Arc<Shared<S>>,
}

struct Shared<S> {
    store: S,
    registry: Registry,
    config: WorkerConfig,
    /// The builder's clock, kept in step with the database's when it reads the
    /// machine's (see [`sync_clock`]).
    clock: Arc<SyncedClock>,
    owner: Arc<str>,
    /// The runs this worker drives now.
    runs: Mutex<HashMap<RunId, Arc<RunCore>>>,
    /// Wakes the claim loop: a notification, a freed slot, a parked run.
    wake: Notify,
    /// Set with `wake` when there may be work to claim now.
    work_now: AtomicBool,
    /// The earliest due time parks announced since the loop last looked.
    due_hint: Mutex<Option<DateTime<Utc>>>,
    /// The deadline the idle claim loop sleeps until (microseconds since the
    /// epoch), or `i64::MIN` while it does not sleep: only a hint earlier than it
    /// wakes the loop.
    sleeping_until: AtomicI64,
    /// When this worker last recovered expired leases (microseconds since the
    /// epoch, on its clock), by its timer or its claim loop.
    last_recovery: AtomicI64,
    /// When this worker last marked its functions' versions as served
    /// (`Store::keep_announced`), in microseconds; MIN before the first time.
    last_heartbeat: AtomicI64,
    /// Set once a graceful shutdown begins: runs finish the step bodies they are
    /// running and are handed back at their next step call.
    shutting_down: AtomicBool,
    /// Slots neither driving a run nor reserved by a claim in flight.
    free: AtomicUsize,
    /// Whether runs may be due: the last claim filled every slot it asked for, or
    /// work was announced since. Only then does a commit claim.
    more_due: AtomicBool,
    /// Set while the committer forms and writes a batch: a slot freed meanwhile is
    /// filled by the claim it makes.
    committing: AtomicBool,
    /// Runs a commit claimed, with the time of the claim, for the claim loop to drive.
    handed: Mutex<Vec<(ClaimedRun, DateTime<Utc>)>>,
}

impl<S> Shared<S> {
    /// Begins a graceful shutdown of every run driven now, and of any run the claim
    /// loop still hands over. Idempotent.
    fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let cores: Vec<Arc<RunCore>> = lock(&self.runs).values().cloned().collect();
        for core in cores {
            core.begin_shutdown();
        }
        self.wake_now();
    }

    fn wake_now(&self) {
        self.work_now.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Reserves up to `max` free slots for a claim; returns how many.
    fn reserve(&self, max: usize) -> usize {
        let mut taken = 0;
        let _ = self
            .free
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |free| {
                taken = free.min(max);
                Some(free - taken)
            });
        taken
    }

    /// Gives back slots a claim reserved and did not fill.
    fn unreserve(&self, slots: usize) {
        self.free.fetch_add(slots, Ordering::SeqCst);
    }

    fn free_slots(&self) -> usize {
        self.free.load(Ordering::SeqCst)
    }

    /// A run's task ended. While a commit is being written and runs are due, that
    /// commit's claim fills the slot (the committer wakes the claim loop if no
    /// commit follows it); otherwise the claim loop does.
    fn slot_freed(&self) {
        self.free.fetch_add(1, Ordering::SeqCst);
        if !(self.committing.load(Ordering::SeqCst) && self.more_due.load(Ordering::SeqCst)) {
            self.wake_now();
        }
    }

    /// Runs a commit claimed, for the claim loop to drive; each holds a reserved slot.
    fn hand_over(&self, claimed: Vec<ClaimedRun>, at: DateTime<Utc>) {
        if claimed.is_empty() {
            return;
        }
        lock(&self.handed).extend(claimed.into_iter().map(|run| (run, at)));
        self.wake.notify_one();
    }

    fn take_handed(&self) -> Vec<(ClaimedRun, DateTime<Utc>)> {
        std::mem::take(&mut *lock(&self.handed))
    }

    fn has_handed(&self) -> bool {
        !lock(&self.handed).is_empty()
    }

    /// A run is due at `at`. Only a claim loop asleep until later is woken: a busy
    /// one reads the next due time when it goes idle, and one asleep until sooner
    /// takes the hint when it wakes. (The loop publishes its deadline before it
    /// takes the hint, and this stores the hint before it reads the deadline, so
    /// one of the two always sees the other.)
    fn hint_due(&self, at: DateTime<Utc>) {
        let mut hint = lock(&self.due_hint);
        *hint = Some(hint.map_or(at, |h| h.min(at)));
        drop(hint);
        if at.timestamp_micros() < self.sleeping_until.load(Ordering::SeqCst) {
            self.wake.notify_one();
        }
    }
}

/// What a worker did before it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Runs it completed or failed.
    pub finished: u64,
    /// Runs it parked (sleeping, backing off).
    pub parked: u64,
    /// Runs it handed back to other workers at shutdown.
    pub released: u64,
    /// Runs it dropped because another worker took them over (its lease expired).
    pub lost: u64,
}

impl<S: Store> Worker<S> {
    /// A builder around a store.
    pub fn builder(store: S) -> WorkerBuilder<S> {
        WorkerBuilder {
            store,
            config: WorkerConfig::default(),
            clock: Arc::new(SystemClock),
            functions: Vec::new(),
        }
    }

    /// This worker's id.
    pub fn id(&self) -> &str {
        &self.shared.owner
    }

    /// Announces the functions this worker serves, so that sends create their runs.
    /// [`Worker::run`] does it first; call it to know that it is done (an event
    /// sent before any worker announced a function starts no run of it).
    pub async fn announce(&self) -> Result<(), Error> {
        let shared = &self.shared;
        // Read before: the next heartbeat is due a period after the time written.
        let (reading, now) = (shared.clock.now(), shared.clock.store_now());
        shared
            .store
            .register_functions(&announced(&shared.registry), now)
            .await?;
        shared
            .last_heartbeat
            .store(reading.timestamp_micros(), Ordering::SeqCst);
        Ok(())
    }

    /// Runs in the background, beside the rest of the program (a web server, a
    /// test), until [`RunningWorker::stop`] or until the handle is dropped.
    ///
    /// ```no_run
    /// # async fn demo(worker: flow_core::Worker<impl flow_core::Store>) -> Result<(), flow_core::Error> {
    /// let running = worker.spawn();
    /// // ... serve requests, send events ...
    /// let report = running.stop().await?; // in-flight steps finish, the rest is handed back
    /// println!("{} runs finished", report.finished);
    /// # Ok(()) }
    /// ```
    pub fn spawn(self) -> RunningWorker {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = self.shared.clone();
        let begin_shutdown = Box::new(move || shared.begin_shutdown());
        let task = tokio::spawn(self.run_until(async {
            // A send or a dropped handle both mean: shut down.
            let _ = stopped.await;
        }));
        RunningWorker {
            stop,
            task,
            begin_shutdown,
        }
    }

    /// Runs until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run(self) -> Result<WorkerReport, Error> {
        self.run_until(shutdown_signal()).await
    }

    /// Runs until `shutdown` resolves, then shuts down gracefully: no new claims,
    /// in-flight steps get the grace period to finish, the rest is handed back.
    /// Cron ticks are sent from the time of this call on, however late the
    /// returned future is first polled (as when it is spawned).
    pub fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> impl Future<Output = Result<WorkerReport, Error>> + Send {
        let started = self.shared.clock.now();
        self.run_from(started, shutdown)
    }

    async fn run_from(
        self,
        started: DateTime<Utc>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<WorkerReport, Error> {
        sync_clock(&self.shared, &self.shared.store, true).await;
        self.announce().await?;
        let shared = self.shared;
        let served = shared
            .registry
            .iter()
            .map(|d| format!("{} <- {}", d.id, d.triggers().join(" | ")))
            .collect::<Vec<_>>()
            .join(", ");
        tracing::info!(
            worker = %shared.owner,
            database = %shared.store.describe(),
            concurrency = shared.config.concurrency,
            functions = %served,
            "flow worker started"
        );

        let mut background = JoinSet::new();
        background.spawn(listen(shared.clone()));
        background.spawn(watch_leases(shared.clone()));
        background.spawn(recover_periodically(shared.clone()));
        background.spawn(heartbeat_periodically(shared.clone()));
        for def in shared.registry.iter() {
            for cron in def.crons {
                background.spawn(cron::tick(shared.clone(), def, cron, started));
            }
        }
        // Ends the renewal thread when dropped, however this returns.
        let _renewal = spawn_renewal(shared.clone());

        let mut report = WorkerReport::default();
        let mut tasks: JoinSet<Exit> = JoinSet::new();
        // The group commit; it ends once the last run holding a handle is done.
        let committer = committer::spawn(shared.clone());
        // The claim loop stops between statements, never in the middle of a claim:
        // runs a claim leased are driven (and handed back) like any other.
        let (stop, stopping) = watch::channel(false);
        {
            // It logs and retries every failure; it ends only when asked to stop.
            let claiming = claim_loop(&shared, &mut tasks, &mut report, &committer, stopping);
            tokio::pin!(claiming, shutdown);
            tokio::select! {
                () = &mut claiming => {}
                _ = &mut shutdown => {
                    shared.begin_shutdown();
                    stop.send_replace(true);
                    claiming.await
                }
            }
        }

        // Graceful shutdown: running step bodies finish and are checkpointed; every
        // run is then handed back at its next step call (also those the last claim
        // handed over, and those a commit's claim did: the committer hands back the
        // ones it claims once the shutdown has begun).
        shared.begin_shutdown();
        for (claimed, at) in shared.take_handed() {
            spawn_run(&shared, &mut tasks, claimed, at, &committer);
        }
        drop(committer);
        let grace = tokio::time::sleep(shared.config.shutdown_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                joined = tasks.join_next() => match joined {
                    Some(joined) => count(&mut report, joined),
                    None => break,
                },
                _ = &mut grace => {
                    let late: Vec<Arc<RunCore>> = lock(&shared.runs).values().cloned().collect();
                    tracing::warn!(runs = late.len(), "shutdown grace elapsed; handing back runs mid-step");
                    for core in late {
                        core.stop(Stop::Release);
                    }
                    while let Some(joined) = tasks.join_next().await {
                        count(&mut report, joined);
                    }
                    break;
                }
            }
        }
        background.abort_all();
        tracing::info!(
            worker = %shared.owner,
            finished = report.finished,
            parked = report.parked,
            released = report.released,
            lost = report.lost,
            "flow worker stopped"
        );
        Ok(report)
    }
}

/// A worker running in the background ([`Worker::spawn`]). Dropping it shuts the
/// worker down gracefully, without waiting for it.
pub struct RunningWorker {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<WorkerReport, Error>>,
    begin_shutdown: Box<dyn Fn() + Send + Sync>,
}

impl RunningWorker {
    /// Shuts the worker down gracefully and waits for it: what it finished, parked,
    /// handed back and lost. The shutdown begins when `stop` is called, not when its
    /// future is first polled: no step body starts after the call.
    pub fn stop(self) -> impl Future<Output = Result<WorkerReport, Error>> + Send {
        (self.begin_shutdown)();
        let _ = self.stop.send(());
        let task = self.task;
        async move {
            match task.await {
                Ok(report) => report,
                // The handle owns the task, so it was not cancelled: it panicked.
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
    }
}

impl<S: Connect> Worker<S> {
    /// A builder for the store at `url`, connected and migrated.
    pub async fn connect(url: &str) -> Result<WorkerBuilder<S>, Error> {
        Ok(Worker::builder(S::connect(url).await?))
    }

    /// A worker for the database named by `DATABASE_URL` (or the backend's default when
    /// it is not set: `./flow.db` with the facade's SQLite backend), serving every
    /// `#[function]` in the binary with the default settings.
    pub async fn from_env() -> Result<Worker<S>, Error> {
        Worker::connect(&env_url::<S>()?).await?.build()
    }
}

/// DATABASE_URL, else the backend's default, else an error saying what to set.
pub(crate) fn env_url<S: Connect>() -> Result<String, Error> {
    database_url_from_env().or_else(|e| S::default_url().ok_or(e))
}

/// `DATABASE_URL`, or an error that says what to set.
pub fn database_url_from_env() -> Result<String, Error> {
    database_url(std::env::var("DATABASE_URL").ok())
}

fn database_url(value: Option<String>) -> Result<String, Error> {
    match value {
        Some(url) if !url.trim().is_empty() => Ok(url),
        _ => Err(Error::Config(
            "DATABASE_URL is not set: set it to your PostgreSQL database, for example \
             DATABASE_URL=postgres://user:password@localhost:5432/app"
                .into(),
        )),
    }
}

/// How long a worker waits after a failed claim before it claims again (or its
/// poll interval, if shorter); a notification of new work ends the wait sooner.
const CLAIM_RETRY: Duration = Duration::from_secs(1);

async fn claim_loop<S: Store>(
    shared: &Arc<Shared<S>>,
    tasks: &mut JoinSet<Exit>,
    report: &mut WorkerReport,
    committer: &Committer,
    mut stopping: watch::Receiver<bool>,
) {
    let functions = shared.registry.unlimited_ids();
    // At start and after an idle wait that ended at its deadline (which may be
    // another worker's lease expiring), recovery runs before the claim; while the
    // worker is busy, its timer runs it (`recover_periodically`). A wake-up by a
    // notification or a freed slot runs none.
    let mut recovery_now = true;
    loop {
        while let Some(joined) = tasks.try_join_next() {
            count(report, joined);
        }
        for (claimed, at) in shared.take_handed() {
            spawn_run(shared, tasks, claimed, at, committer);
        }
        // A shutdown begins before the loop is told to stop (`RunningWorker::stop`
        // begins it at the call): a run it hands back meanwhile is not claimed again.
        if *stopping.borrow() || shared.is_shutting_down() {
            return;
        }
        // Armed before looking for work, so a wake-up during the lookup is not lost.
        let woken = shared.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        shared.work_now.store(false, Ordering::SeqCst);

        let now = shared.clock.now();
        if std::mem::take(&mut recovery_now) {
            recover(shared).await;
        }

        // Looked at again just before claiming, after the recovery statement: a run
        // handed back by a shutdown that began meanwhile is left to other workers.
        // (A claim already in flight when it begins hands its runs back at once.)
        let free = if shared.is_shutting_down() {
            0
        } else {
            shared.reserve(usize::MAX)
        };
        let mut claimed_all = false;
        let mut claim_failed = false;
        if free > 0 {
            let request = ClaimRequest {
                owner: &shared.owner,
                functions: &functions,
                limited: shared.registry.limited(),
                max: free,
                lease: shared.config.lease,
            };
            match shared.store.claim(request, shared.clock.store_now()).await {
                Ok(runs) => {
                    claimed_all = runs.len() == free;
                    shared.more_due.store(claimed_all, Ordering::SeqCst);
                    shared.unreserve(free - runs.len());
                    for claimed in runs {
                        spawn_run(shared, tasks, claimed, now, committer);
                    }
                }
                Err(e) => {
                    shared.unreserve(free);
                    claim_failed = true;
                    tracing::warn!(error = %e, retry_in = ?CLAIM_RETRY.min(shared.config.poll_interval), "claim failed")
                }
            }
        }
        if claimed_all || (free == 0 && shared.more_due.load(Ordering::SeqCst)) {
            // More may be due: claim again once a slot frees up (or a commit's
            // claim hands runs over).
            tokio::select! {
                _ = woken => {}
                _ = stopping.changed() => {}
            }
            continue;
        }
        let poll_deadline = later(shared.clock.now(), shared.config.poll_interval);
        let deadline = if claim_failed {
            // Not the next due time, which is likely past: the claim would fail
            // again at once, in a loop as fast as the database answers.
            later(
                shared.clock.now(),
                CLAIM_RETRY.min(shared.config.poll_interval),
            )
        } else if free > 0 {
            match shared
                .store
                .next_wakeup(&functions, shared.registry.limited())
                .await
            {
                Ok(Some(next)) => next.min(poll_deadline),
                Ok(None) => poll_deadline,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the next due time");
                    poll_deadline
                }
            }
        } else {
            poll_deadline
        };
        // Sleep until the deadline, or until there may be work now. A due time
        // announced by another worker only moves the deadline: no query until then.
        let mut deadline = deadline;
        loop {
            shared
                .sleeping_until
                .store(deadline.timestamp_micros(), Ordering::SeqCst);
            if let Some(hint) = lock(&shared.due_hint).take() {
                deadline = deadline.min(hint);
                shared
                    .sleeping_until
                    .store(deadline.timestamp_micros(), Ordering::SeqCst);
            }
            if deadline <= shared.clock.now() {
                recovery_now = true;
                break;
            }
            if shared.work_now.load(Ordering::SeqCst) || shared.has_handed() {
                break;
            }
            tokio::select! {
                _ = woken.as_mut() => {}
                _ = shared.clock.sleep_until(deadline) => {
                    recovery_now = true;
                    break;
                }
                _ = stopping.changed() => break,
            }
            woken.set(shared.wake.notified());
            woken.as_mut().enable();
        }
        shared.sleeping_until.store(i64::MIN, Ordering::SeqCst);
    }
}

/// The functions of `registry` as a worker announces them.
fn announced(registry: &Registry) -> Vec<FunctionInfo> {
    registry
        .iter()
        .map(|d| FunctionInfo {
            id: d.id.to_owned(),
            trigger: d.trigger.to_owned(),
            more_triggers: d.more_triggers.iter().map(|t| (*t).to_owned()).collect(),
            failures_of: d.failures_of.map(str::to_owned),
            cancel_on: d.cancel_on.to_vec(),
            timeouts: d.timeouts,
            send_rules: crate::catalog::SendRules::of(d),
        })
        .collect()
}

/// Marks the versions of this worker's functions as served every
/// `VERSION_HEARTBEAT` after the last time (the announcement is the first):
/// senders follow the newest version that a live worker serves.
async fn heartbeat_periodically<S: Store>(shared: Arc<Shared<S>>) {
    let infos = announced(&shared.registry);
    loop {
        let last = shared.last_heartbeat.load(Ordering::SeqCst);
        let since = if last == i64::MIN {
            shared.clock.now()
        } else {
            DateTime::from_timestamp_micros(last).unwrap_or_default()
        };
        let next = later(since, crate::catalog::VERSION_HEARTBEAT);
        shared.clock.sleep_until(next).await;
        let (reading, now) = (shared.clock.now(), shared.clock.store_now());
        shared
            .last_heartbeat
            .store(reading.timestamp_micros(), Ordering::SeqCst);
        if let Err(e) = shared.store.keep_announced(&infos, now).await {
            tracing::warn!(error = %e, "could not mark the served function versions as seen");
        }
    }
}

/// Requeues the runs whose lease expired (any worker's), when there are some
/// telling the claim loop to claim, and cancels the runs past their timeouts.
async fn recover<S: Store>(shared: &Shared<S>) {
    shared
        .last_recovery
        .store(shared.clock.now().timestamp_micros(), Ordering::SeqCst);
    match shared
        .store
        .recover_expired(shared.config.max_lost, shared.clock.store_now())
        .await
    {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(runs = n, "recovered runs whose worker was lost");
            shared.more_due.store(true, Ordering::SeqCst);
            shared.wake_now();
        }
        Err(e) => tracing::warn!(error = %e, "could not recover expired leases"),
    }
    match shared
        .store
        .cancel_timed_out(shared.clock.store_now())
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(runs = n, "cancelled runs past their timeouts"),
        Err(e) => tracing::warn!(error = %e, "could not cancel runs past their timeouts"),
    }
}

/// Recovers expired leases every quarter lease since the last recovery, also
/// while the worker is too busy for its claim loop to come round (its claims
/// ride on commits): a lost worker's runs are then taken over within about a
/// quarter lease of expiring by any live worker, busy or idle.
async fn recover_periodically<S: Store>(shared: Arc<Shared<S>>) {
    let every = shared.config.lease / 4;
    loop {
        let last = shared.last_recovery.load(Ordering::SeqCst);
        let next = if last == i64::MIN {
            later(shared.clock.now(), every)
        } else {
            later(
                DateTime::from_timestamp_micros(last).unwrap_or_default(),
                every,
            )
        };
        shared.clock.sleep_until(next).await;
        // The claim loop may have recovered meanwhile.
        if shared.last_recovery.load(Ordering::SeqCst) == last {
            recover(&shared).await;
        }
    }
}

fn spawn_run<S: Store>(
    shared: &Arc<Shared<S>>,
    tasks: &mut JoinSet<Exit>,
    claimed: crate::store::ClaimedRun,
    claimed_at: DateTime<Utc>,
    committer: &Committer,
) {
    let Some(def) = shared.registry.get(&claimed.function_id) else {
        // The claim query only returns runs of functions we serve.
        tracing::error!(function = %claimed.function_id, "claimed a run of a function this worker does not serve");
        shared.unreserve(1);
        return;
    };
    let run_id = claimed.lease.run_id;
    let core = Arc::new(RunCore::new(
        def,
        claimed.lease.clone(),
        claimed_at,
        RunSettings {
            lease_for: shared.config.lease,
            announce_within: shared.config.poll_interval,
            limits: shared.config.limits,
        },
        committer.clone(),
        shared.clock.clone(),
    ));
    // This worker may still drive an older execution whose lease expired (a long
    // pause without renewals): that one lost its lease to this claim.
    if let Some(stale) = lock(&shared.runs).insert(run_id, core.clone()) {
        stale.stop(Stop::LeaseLost);
    }
    if shared.shutting_down.load(Ordering::SeqCst) {
        core.begin_shutdown();
    }
    let shared = shared.clone();
    tasks.spawn(async move {
        let exit = drive(shared.store.clone(), core.clone(), def, claimed).await;
        let mut runs = lock(&shared.runs);
        if runs
            .get(&run_id)
            .is_some_and(|current| Arc::ptr_eq(current, &core))
        {
            runs.remove(&run_id);
        }
        drop(runs);
        shared.slot_freed();
        exit
    });
}

fn count(report: &mut WorkerReport, joined: Result<Exit, tokio::task::JoinError>) {
    match joined {
        Ok(Exit::Finished) => report.finished += 1,
        Ok(Exit::Parked) => report.parked += 1,
        Ok(Exit::Released) => report.released += 1,
        Ok(Exit::Dropped) => report.lost += 1,
        Err(e) => tracing::error!(error = %e, "a run's task ended abnormally"),
    }
}

/// Forwards the store's notifications to the claim loop; reconnects after errors.
async fn listen<S: Store>(shared: Arc<Shared<S>>) {
    loop {
        match shared.store.wakeups().await {
            Ok(mut stream) => {
                // Work sent before LISTEN took effect sent its notification to nobody:
                // look once now that none can be missed.
                shared.wake_now();
                while let Some(wakeup) = stream.next().await {
                    match wakeup {
                        Wakeup::Now => {
                            shared.more_due.store(true, Ordering::SeqCst);
                            shared.wake_now();
                        }
                        Wakeup::At(at) => shared.hint_due(at),
                    }
                }
                tracing::warn!("notification stream ended; reconnecting");
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not listen for notifications; polling meanwhile")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Starts the renewal loop on a thread of its own, with a runtime and database
/// connections of its own ([`Store::detached`]): a step body that blocks every
/// thread of the worker's runtime (CPU work, blocking I/O without
/// `spawn_blocking`) then cannot starve the renewals and lose its run's lease to
/// another worker. The loop ends when the returned handle is dropped.
fn spawn_renewal<S: Store>(shared: Arc<Shared<S>>) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("flow-renewal".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!(error = %e, "could not start the renewal thread's runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let store = match shared.store.detached().await {
                    Ok(store) => store,
                    Err(e) => {
                        tracing::warn!(
                            error = %e,
                            "could not open the renewal thread's connections; renewing on \
                             the worker's own, which blocking step bodies can delay"
                        );
                        shared.store.clone()
                    }
                };
                tokio::select! {
                    () = renew(&shared, &store) => {}
                    _ = stopped => {}
                }
            });
        });
    if let Err(e) = thread {
        tracing::error!(error = %e, "could not start the renewal thread; leases will lapse");
    }
    stop
}

/// Whether `core` is still an execution this worker drives.
fn still_driven<S: Store>(shared: &Shared<S>, core: &Arc<RunCore>) -> bool {
    lock(&shared.runs)
        .get(&core.run_id)
        .is_some_and(|driven| Arc::ptr_eq(driven, core))
}

/// Renews, in one statement, exactly the leases of the executions this worker
/// drives; an execution whose lease was not renewed is dropped.
async fn renew<S: Store>(shared: &Shared<S>, store: &S) {
    loop {
        let next = later(shared.clock.now(), shared.config.renew_every);
        shared.clock.sleep_until(next).await;
        sync_clock(shared, store, false).await;
        // The executions driven now; only they are judged by this renewal (a run
        // claimed again meanwhile is a new execution with a new token).
        let driven: Vec<Arc<RunCore>> = lock(&shared.runs).values().cloned().collect();
        if driven.is_empty() {
            continue;
        }
        let leases: Vec<Lease> = driven.iter().map(|core| core.lease().clone()).collect();
        let started = shared.clock.now();
        match store
            .renew(&leases, shared.config.lease, shared.clock.store_now())
            .await
        {
            Ok(held) => {
                let held: HashSet<RunId> = held.into_iter().collect();
                for core in &driven {
                    if held.contains(&core.run_id) {
                        core.lease_extended(started);
                    } else if still_driven(shared, core) {
                        tracing::warn!(run_id = %core.run_id, "lease lost; dropping the run");
                        core.stop(Stop::LeaseLost);
                    }
                    // Else it parked or ended while the renewal was on its way,
                    // and has no lease to lose.
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not renew leases"),
        }
    }
}

/// Measures how far this machine's clock is from the database's, so that the times
/// a worker computes (a sleep's wake time, a retry's, its lease deadline) are on
/// the clock its queries compare them with: a machine a minute behind then neither
/// ends sleeps early nor keeps runs past their lease. Nothing to do for a test
/// clock, which drives the store itself. On failure the last offset holds.
async fn sync_clock<S: Store>(shared: &Shared<S>, store: &S, first: bool) {
    let clock = &shared.clock;
    if !clock.follows_database() {
        return;
    }
    // A few readings: the first may include opening a connection.
    let mut readings = Vec::with_capacity(CLOCK_READINGS);
    for _ in 0..CLOCK_READINGS {
        let before = clock.local_now();
        match store.database_time().await {
            Ok(database) => readings.push(Reading {
                before,
                database,
                after: clock.local_now(),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the database's clock");
                break;
            }
        }
    }
    let Some(offset) = clock.sync(&readings) else {
        return;
    };
    if first && offset.abs() > chrono::Duration::seconds(1) {
        tracing::warn!(
            offset_ms = offset.num_milliseconds(),
            "this machine's clock is off the database's; flow corrects its readings by \
             the database's clock, but the machine's should be fixed (NTP)"
        );
    }
}

/// Readings of the database's clock per measurement of the offset.
const CLOCK_READINGS: usize = 3;

/// Stops every execution whose local lease deadline passed without a renewal (the
/// database unreachable, the renewals failing): the lease is about to lapse, and
/// another worker may then take the run over. Without it, a worker cut off from
/// the database would run step bodies that another worker runs too.
async fn watch_leases<S: Store>(shared: Arc<Shared<S>>) {
    let tick = (shared.config.lease / 10).min(Duration::from_secs(1));
    loop {
        let next = later(shared.clock.now(), tick);
        shared.clock.sleep_until(next).await;
        let now = shared.clock.now();
        let overdue: Vec<Arc<RunCore>> = lock(&shared.runs)
            .values()
            .filter(|core| core.lease_overdue(now))
            .cloned()
            .collect();
        for core in overdue {
            tracing::warn!(
                run_id = %core.run_id,
                "the lease was not renewed in time; stopping the run before another worker takes it"
            );
            core.stop(Stop::LeaseLost);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown signal received");
}

#[cfg(test)]
mod tests {
    use super::{WorkerConfig, database_url};

    #[test]
    fn settings_that_would_spin_or_lapse_are_refused_by_name() {
        use std::time::Duration;
        let ok = WorkerConfig::default();
        assert!(ok.check().is_ok());
        let zero = WorkerConfig {
            renew_every: Duration::ZERO,
            ..ok.clone()
        };
        assert!(
            zero.check()
                .unwrap_err()
                .to_string()
                .contains("renew_every must be longer than zero")
        );
        let lapse = WorkerConfig {
            lease: Duration::from_secs(5),
            renew_every: Duration::from_secs(5),
            ..ok.clone()
        };
        assert!(
            lapse
                .check()
                .unwrap_err()
                .to_string()
                .contains("shorter than four fifths of the lease")
        );
        let unnamed = WorkerConfig {
            worker_id: Some(" ".into()),
            ..ok
        };
        assert!(
            unnamed
                .check()
                .unwrap_err()
                .to_string()
                .contains("worker_id")
        );
    }

    #[test]
    fn a_missing_or_empty_database_url_says_what_to_set() {
        for value in [None, Some(String::new()), Some("  ".into())] {
            let err = database_url(value).unwrap_err().to_string();
            assert!(
                err.contains("DATABASE_URL is not set") && err.contains("postgres://"),
                "{err}"
            );
        }
        assert_eq!(
            database_url(Some("postgres://x".into())).unwrap(),
            "postgres://x"
        );
    }
}
