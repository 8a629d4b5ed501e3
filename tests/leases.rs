//! Leases: renewal keeps a long step's run, a stale worker's late write is refused,
//! graceful shutdown finishes in-flight steps and hands the rest back, and a run
//! whose workers keep dying gives up naming its step; a busy worker still
//! recovers the runs of a worker that was lost.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flow::prelude::*;
use flow::store::{ClaimRequest, Store, Transition};
use flow::{Clock, Now, RunStatus, SystemClock};
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(30);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/long")]
struct Long {}

static LONG_RUNS: AtomicU32 = AtomicU32::new(0);

#[step]
async fn long_step(_ctx: &Ctx) -> Result<u32, StepError> {
    LONG_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(1)
}

#[function(event = "test/long")]
async fn long(ctx: &Ctx, _event: Long) -> Result<u32, FlowError> {
    Ok(long_step(ctx).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_worker_renews_its_lease_through_a_step_longer_than_the_lease() {
    let (store, _) = common::store().await;
    let short = |id: &str| {
        common::worker(&store)
            .register::<long>()
            .worker_id(id)
            // The step takes 5 s, the lease 3 s: only renewals (every 250 ms, a
            // margin of 2.75 s on a loaded machine) keep the run on this worker.
            .lease(Duration::from_secs(3))
            .renew_every(Duration::from_millis(250))
    };
    let _w1 = common::spawn_worker(short("first")).await;
    let client = flow::Client::new(store.clone());
    let run = client.send(Long {}).await.unwrap().runs[0].1;
    common::eventually(WAIT, "the step to start", || async {
        LONG_RUNS.load(Ordering::SeqCst) == 1
    })
    .await;
    // A second worker that would take the run over if the lease lapsed.
    let _w2 = common::spawn_worker(short("second")).await;
    assert_eq!(
        client.wait(run, WAIT).await.unwrap().status,
        RunStatus::Completed
    );
    assert_eq!(LONG_RUNS.load(Ordering::SeqCst), 1, "the step ran once");
}

// ---------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/crunch")]
struct Crunch {}

static CRUNCH_RUNS: AtomicU32 = AtomicU32::new(0);

#[step]
async fn crunch(_ctx: &Ctx) -> Result<u32, StepError> {
    if CRUNCH_RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
        // Blocks its thread past the lease, as CPU-bound work or a blocking call
        // made without `spawn_blocking` does.
        std::thread::sleep(Duration::from_secs(8));
    }
    Ok(1)
}

#[function(event = "test/crunch")]
async fn crunch_numbers(ctx: &Ctx, _event: Crunch) -> Result<u32, FlowError> {
    Ok(crunch(ctx).await?)
}

/// The lease is 6 s, the body blocks the runtime's only thread for 8 s.
fn crunching(store: &flow::AnyStore) -> flow::WorkerBuilder<flow::AnyStore> {
    common::worker(store)
        .register::<crunch_numbers>()
        .lease(Duration::from_secs(6))
        .renew_every(Duration::from_secs(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_step_body_that_blocks_the_runtime_keeps_its_lease() {
    let (store, url) = common::store().await;
    let _blocked = common::spawn_worker(crunching(&store).worker_id("blocked")).await;
    // Another worker, on a runtime and connections of its own: it takes the run
    // over (and runs the step again) if the blocked worker's lease lapses.
    let (stop_other, other_stopped) = tokio::sync::oneshot::channel::<()>();
    let other = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let store = <flow::AnyStore as flow::Connect>::connect(&url)
                .await
                .unwrap();
            let worker = common::spawn_worker(crunching(&store).worker_id("other")).await;
            let _ = other_stopped.await;
            worker.stop().await.unwrap()
        })
    });

    let client = flow::Client::new(store.clone());
    let run = client.send(Crunch {}).await.unwrap().runs[0].1;
    assert_eq!(client.result::<u32>(run, WAIT).await.unwrap(), 1);
    assert_eq!(
        CRUNCH_RUNS.load(Ordering::SeqCst),
        1,
        "the lease was renewed while the body blocked: no other worker ran it"
    );
    let _ = stop_other.send(());
    tokio::task::spawn_blocking(move || other.join().unwrap())
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/fenced")]
struct Fenced {}

static FENCED_EXECUTIONS: AtomicU32 = AtomicU32::new(0);
static RELEASE_STALE: Notify = Notify::const_new();
static RELEASE_NEW: Notify = Notify::const_new();

#[step]
async fn decide(_ctx: &Ctx) -> Result<String, StepError> {
    if FENCED_EXECUTIONS.fetch_add(1, Ordering::SeqCst) == 0 {
        // The first worker stalls here past its lease.
        RELEASE_STALE.notified().await;
        return Ok("stale worker".into());
    }
    RELEASE_NEW.notified().await;
    Ok("new owner".into())
}

#[function(event = "test/fenced")]
async fn fenced(ctx: &Ctx, _event: Fenced) -> Result<String, FlowError> {
    Ok(decide(ctx).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_workers_late_write_is_refused_and_the_new_owners_result_stands() {
    let (store, _) = common::store().await;
    // This worker stalls: its clock stands still (a second ahead, so the new run is
    // due for it), so it never renews, while its lease lapses in everyone else's
    // time. With one slot it cannot claim the run back itself.
    let frozen = flow::ManualClock::new(chrono::Utc::now() + chrono::Duration::seconds(1));
    let stale = common::worker(&store)
        .register::<fenced>()
        .worker_id("stale")
        .concurrency(1)
        .clock(frozen)
        .lease(Duration::from_millis(500))
        .renew_every(Duration::from_millis(100));
    let stale = common::spawn_worker(stale).await;
    let client = flow::Client::new(store.clone());
    let run = client.send(Fenced {}).await.unwrap().runs[0].1;
    common::eventually(WAIT, "the stale worker to start the step", || async {
        FENCED_EXECUTIONS.load(Ordering::SeqCst) == 1
    })
    .await;

    let _new =
        common::spawn_worker(common::worker(&store).register::<fenced>().worker_id("new")).await;
    common::eventually(WAIT, "the new owner to start the step", || async {
        FENCED_EXECUTIONS.load(Ordering::SeqCst) == 2
    })
    .await;

    // The stale worker's step finishes first; its checkpoint carries the old token.
    RELEASE_STALE.notify_one();
    let report = stale.stop().await.unwrap();
    assert_eq!((report.lost, report.finished), (1, 0), "{report:?}");
    let view = client.run(run).await.unwrap().unwrap();
    assert!(
        view.steps.is_empty(),
        "the stale write changed nothing: {:?}",
        view.steps
    );
    assert_eq!(view.status, RunStatus::Running);

    RELEASE_NEW.notify_one();
    let out: String = client.result(run, WAIT).await.unwrap();
    assert_eq!(out, "new owner");
    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(view.steps.len(), 1);
    assert_eq!(view.steps[0].output, Some(serde_json::json!("new owner")));
}

// ---------------------------------------------------------------------------

// Each shutdown test has a function and counters of its own, so that they also
// hold when run as threads of one process (`cargo test`).

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/shutdown")]
struct Shutdown {}

static FIRST_STEP_RUNS: AtomicU32 = AtomicU32::new(0);
static SECOND_STEP_RUNS: AtomicU32 = AtomicU32::new(0);
static STEP_STARTED: Notify = Notify::const_new();
static FINISH_STEP: Notify = Notify::const_new();

#[step]
async fn first_step(_ctx: &Ctx) -> Result<u32, StepError> {
    let n = FIRST_STEP_RUNS.fetch_add(1, Ordering::SeqCst);
    if n == 0 {
        STEP_STARTED.notify_one();
        FINISH_STEP.notified().await;
    }
    Ok(n)
}

#[step]
async fn second_step(_ctx: &Ctx) -> Result<u32, StepError> {
    Ok(SECOND_STEP_RUNS.fetch_add(1, Ordering::SeqCst))
}

#[function(event = "test/shutdown")]
async fn shutdown(ctx: &Ctx, _event: Shutdown) -> Result<(u32, u32), FlowError> {
    let a = first_step(ctx).await?;
    let b = second_step(ctx).await?;
    Ok((a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_the_running_step_finish_and_hands_the_run_back() {
    let (store, _) = common::store().await;
    let worker = common::spawn_worker(common::worker(&store).register::<shutdown>()).await;
    let client = flow::Client::new(store.clone());
    let run = client.send(Shutdown {}).await.unwrap().runs[0].1;
    STEP_STARTED.notified().await;
    // Shutdown begins (when `stop` is called) while the step runs; the step
    // finishes afterwards.
    let stopping = tokio::spawn(worker.stop());
    FINISH_STEP.notify_one();
    let report = stopping.await.unwrap().unwrap();
    // Handed back once; or twice, when a claim already in flight as the shutdown
    // began took the run again (and handed it straight back).
    assert!(
        report.finished == 0 && (1..=2).contains(&report.released),
        "{report:?}"
    );
    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(view.status, RunStatus::Queued);
    assert_eq!(view.steps.len(), 1, "the in-flight step was checkpointed");
    assert_eq!(
        SECOND_STEP_RUNS.load(Ordering::SeqCst),
        0,
        "no new step started after shutdown"
    );

    let _next = common::spawn_worker(common::worker(&store).register::<shutdown>()).await;
    let out: (u32, u32) = client.result(run, WAIT).await.unwrap();
    assert_eq!(out, (0, 0));
    assert_eq!(
        FIRST_STEP_RUNS.load(Ordering::SeqCst),
        1,
        "the first step never ran again"
    );
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/stuck")]
struct Stuck {}

static STUCK_RUNS: AtomicU32 = AtomicU32::new(0);
static STUCK_STARTED: Notify = Notify::const_new();

#[step]
async fn stuck_step(_ctx: &Ctx) -> Result<u32, StepError> {
    let n = STUCK_RUNS.fetch_add(1, Ordering::SeqCst);
    if n == 0 {
        STUCK_STARTED.notify_one();
        std::future::pending::<()>().await;
    }
    Ok(n)
}

#[function(event = "test/stuck")]
async fn stuck(ctx: &Ctx, _event: Stuck) -> Result<u32, FlowError> {
    Ok(stuck_step(ctx).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_outlasts_the_shutdown_grace_is_dropped_and_its_run_handed_back() {
    let (store, _) = common::store().await;
    let builder = common::worker(&store)
        .register::<stuck>()
        .shutdown_grace(Duration::from_millis(200));
    let worker = common::spawn_worker(builder).await;
    let client = flow::Client::new(store.clone());
    let run = client.send(Stuck {}).await.unwrap().runs[0].1;
    STUCK_STARTED.notified().await;
    let report = worker.stop().await.unwrap();
    assert_eq!(report.released, 1, "{report:?}");
    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!((view.status, view.steps.len()), (RunStatus::Queued, 0));

    let _next = common::spawn_worker(common::worker(&store).register::<stuck>()).await;
    let out: u32 = client.result(run, WAIT).await.unwrap();
    assert_eq!(out, 1, "the dropped step ran again on the next worker");
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_lost_too_often_without_a_checkpoint_fails_naming_its_step() {
    let (store, _) = common::store().await;
    common::worker(&store)
        .register::<shutdown>()
        .build()
        .unwrap()
        .announce()
        .await
        .unwrap();
    let client = flow::Client::new(store.clone());
    let run = client.send(Shutdown {}).await.unwrap().runs[0].1;
    let owner: Arc<str> = "doomed".into();
    let functions = vec!["shutdown".to_string()];
    let mut now = SystemClock.now();
    for lost_before in 0..3u32 {
        let claimed = store
            .claim(
                ClaimRequest {
                    owner: &owner,
                    functions: &functions,
                    limited: flow::flow_control::Limited::none(),
                    max: 10,
                    lease: Duration::from_secs(1),
                },
                Now::At(now),
            )
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].lost_count, lost_before);
        // What a worker does when it runs a step of a run that was lost before.
        let mark = Transition {
            executing: Some("first_step".into()),
            ..Transition::CONTINUE
        };
        store
            .commit(
                &[(claimed[0].lease.clone(), mark)],
                Duration::from_secs(1),
                Now::At(now),
            )
            .await
            .unwrap();
        now += chrono::Duration::seconds(2);
        assert_eq!(store.recover_expired(3, Now::At(now)).await.unwrap(), 1);
    }
    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(view.status, RunStatus::Failed);
    let error = view.error.unwrap();
    assert!(
        error.contains("lost 3 times in a row") && error.contains("step `first_step`"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/hold")]
struct Hold {}

static HOLD_STARTED: AtomicU32 = AtomicU32::new(0);
static HOLD_RELEASED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[step]
async fn hold_step(_ctx: &Ctx) -> Result<u32, StepError> {
    HOLD_STARTED.fetch_add(1, Ordering::SeqCst);
    while !HOLD_RELEASED.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(1)
}

#[function(event = "test/hold")]
async fn hold(ctx: &Ctx, _event: Hold) -> Result<u32, FlowError> {
    Ok(hold_step(ctx).await?)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/orphan")]
struct Orphan {}

#[function(event = "test/orphan")]
async fn orphan(_ctx: &Ctx, _event: Orphan) -> Result<u32, FlowError> {
    Ok(2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_worker_recovers_a_lost_workers_run_on_its_own_timer() {
    let (store, _) = common::store().await;
    // Every slot busy and an hourly poll: nothing but the recovery timer (every
    // quarter lease, 1 s) looks at expired leases while the step runs.
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<hold>()
            .register::<orphan>()
            .concurrency(1)
            .poll_interval(Duration::from_secs(3600))
            .lease(Duration::from_secs(4))
            .renew_every(Duration::from_millis(500)),
    )
    .await;
    let client = flow::Client::new(store.clone());
    let held = client.send(Hold {}).await.unwrap().runs[0].1;
    common::eventually(WAIT, "the holding step to start", || async {
        HOLD_STARTED.load(Ordering::SeqCst) == 1
    })
    .await;
    // A worker that claims the other run and is never heard of again.
    let lost = client.send(Orphan {}).await.unwrap().runs[0].1;
    let owner: Arc<str> = "ghost".into();
    let claimed = store
        .claim(
            ClaimRequest {
                owner: &owner,
                functions: &["orphan".to_string()],
                limited: flow::flow_control::Limited::none(),
                max: 1,
                lease: Duration::from_secs(1),
            },
            Now::Database,
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the ghost holds the run");
    common::eventually(WAIT, "the busy worker to recover the run", || async {
        let view = client.run(lost).await.unwrap().unwrap();
        view.last_lost.is_some_and(|l| &*l.worker == "ghost")
    })
    .await;
    assert_eq!(
        HOLD_STARTED.load(Ordering::SeqCst),
        1,
        "still busy with the first run"
    );
    HOLD_RELEASED.store(true, Ordering::SeqCst);
    for run in [held, lost] {
        assert_eq!(
            client.wait(run, WAIT).await.unwrap().status,
            RunStatus::Completed
        );
    }
}
