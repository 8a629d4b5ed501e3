//! Pausing a function: its runs are held, not skipped (sends create them, sleeps
//! come due), no worker takes them up while it is paused, and a resume runs them in
//! their order. Pausing a function no worker announced says so.

mod common;

use std::time::Duration;

use flow::RunStatus;
use flow::prelude::*;

const WAIT: Duration = Duration::from_secs(60);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/pause.job")]
struct Job {
    n: u32,
    #[serde(default)]
    nap_secs: u64,
}

/// Naps if asked (durably), then says its number.
#[function(event = "test/pause.job")]
async fn job(ctx: &Ctx, job: Job) -> Result<u32, FlowError> {
    if job.nap_secs > 0 {
        ctx.sleep("nap", Duration::from_secs(job.nap_secs)).await?;
    }
    Ok(job.n)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/pause.other")]
struct Other {}

#[function(event = "test/pause.other")]
async fn other(_ctx: &Ctx, _event: Other) -> Result<(), FlowError> {
    Ok(())
}

/// Sends a run of `other` and waits for its end, which it returns: with one slot
/// and claims in due order, any run due before it and claimable has been started
/// by then.
async fn after_a_later_run(client: &flow::Client) -> chrono::DateTime<chrono::Utc> {
    let run = client.send(Other {}).await.unwrap().runs[0].1;
    let view = client.wait(run, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Completed);
    view.finished_at.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_function_holds_its_runs_and_a_resume_runs_them_in_order() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .concurrency(1)
            .register::<job>()
            .register::<other>(),
    )
    .await;
    client.pause("job").await.unwrap();
    let paused_at = |functions: &[flow::FunctionView], id: &str| {
        let function = functions.iter().find(|f| f.id == id).unwrap();
        function.paused_at
    };
    let functions = client.functions().await.unwrap();
    let since = paused_at(&functions, "job").expect("job shows as paused");
    assert_eq!(paused_at(&functions, "other"), None);
    assert_eq!(
        functions.iter().find(|f| f.id == "job").unwrap().trigger,
        "test/pause.job"
    );
    // Pausing twice changes nothing, not even since when.
    client.pause("job").await.unwrap();
    let functions = client.functions().await.unwrap();
    assert_eq!(paused_at(&functions, "job"), Some(since));
    let mut jobs = Vec::new();
    for n in 1..=3 {
        jobs.push(client.send(Job { n, nap_secs: 0 }).await.unwrap().runs[0].1);
    }
    after_a_later_run(&client).await;
    for run in &jobs {
        let view = client.run(*run).await.unwrap().unwrap();
        assert_eq!(view.status, RunStatus::Queued, "held, not skipped");
        assert_eq!(view.started_at, None);
    }
    client.resume("job").await.unwrap();
    assert_eq!(paused_at(&client.functions().await.unwrap(), "job"), None);
    let mut started = Vec::new();
    for (run, n) in jobs.iter().zip(1..) {
        let out: u32 = client.result(*run, WAIT).await.unwrap();
        assert_eq!(out, n);
        started.push(client.run(*run).await.unwrap().unwrap().started_at.unwrap());
    }
    assert!(
        started.windows(2).all(|w| w[0] <= w[1]),
        "resumed in order: {started:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_comes_due_while_paused_waits_for_the_resume() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .concurrency(1)
            .register::<job>()
            .register::<other>()
            .clock(clock.clone()),
    )
    .await;
    let run = client.send(Job { n: 7, nap_secs: 60 }).await.unwrap().runs[0].1;
    common::eventually(WAIT, "the run to sleep", || async {
        common::status(&client, run).await == RunStatus::Sleeping
    })
    .await;
    client.pause("job").await.unwrap();
    // Past the nap's end, so that the nap is due before the later run.
    clock.advance(Duration::from_secs(61));
    after_a_later_run(&client).await;
    assert_eq!(common::status(&client, run).await, RunStatus::Sleeping);
    client.resume("job").await.unwrap();
    let out: u32 = client.result(run, WAIT).await.unwrap();
    assert_eq!(out, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_a_function_no_worker_announced_says_so() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    for refused in [client.pause("nope").await, client.resume("nope").await] {
        let message = refused.unwrap_err().to_string();
        assert!(
            message.contains("no worker has announced function `nope`"),
            "{message}"
        );
    }
    // An id the database could not even compare is refused the same way.
    let message = client.pause("no\0pe").await.unwrap_err().to_string();
    assert!(
        message.contains("no worker has announced function `no\\u0000pe`"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_does_not_count_held_runs_as_due() {
    let (store, _) = common::store().await;
    let faulty = common::faulty::Faulty::new(store.clone(), 0);
    let worker = flow_core::Worker::builder(faulty.clone())
        .poll_interval(Duration::from_secs(3600))
        .concurrency(1)
        .register::<job>()
        .register::<other>()
        .build()
        .unwrap();
    worker.announce().await.unwrap();
    let _running = worker.spawn();
    let client = flow::Client::new(store.clone());
    client.pause("job").await.unwrap();
    let held = client.send(Job { n: 1, nap_secs: 0 }).await.unwrap().runs[0].1;
    let done = after_a_later_run(&client).await;
    // Idle again once the later run is done, the worker reads its next due time
    // (reads before may see the later run due). A held run in it would be due
    // already: the worker would claim at once, find nothing, and loop.
    let idle_reads = || -> Vec<_> {
        let reads = faulty.next_wakeups.lock().unwrap();
        reads.iter().filter(|(at, _)| *at > done).copied().collect()
    };
    common::eventually(
        WAIT,
        "the idle worker to read its next due time",
        || async { !idle_reads().is_empty() },
    )
    .await;
    for (at, next) in idle_reads() {
        assert!(
            next.is_none_or(|next| next > at),
            "a next due time of {next:?} read at {at}: the held run counted"
        );
    }
    client.resume("job").await.unwrap();
    let out: u32 = client.result(held, WAIT).await.unwrap();
    assert_eq!(out, 1);
}
