//! Sleeps and backoff against an injected clock: parked runs hold no worker, wake
//! on time on whichever worker is up, also after every worker was restarted. And
//! machines whose clocks are off: the database's clock rules their leases and sleeps.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flow::prelude::*;
use flow::{Clock, RunStatus, StepKind};

const WAIT: Duration = Duration::from_secs(30);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/trial.started")]
struct TrialStarted {
    account: i64,
}

static REMINDERS: AtomicU32 = AtomicU32::new(0);

#[step]
async fn send_reminder(_ctx: &Ctx, account: i64) -> Result<i64, StepError> {
    REMINDERS.fetch_add(1, Ordering::SeqCst);
    Ok(account)
}

#[function(event = "test/trial.started")]
async fn trial(ctx: &Ctx, event: TrialStarted) -> Result<i64, FlowError> {
    ctx.sleep("wait-a-week", Duration::from_secs(7 * 86_400))
        .await?;
    Ok(send_reminder(ctx, event.account).await?)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/probe")]
struct Probe {}

/// Served beside the function under test: once a probe run has completed, the
/// worker has claimed since the clock last moved, and would have claimed then
/// every run that was due.
#[function(event = "test/probe")]
async fn probe(_ctx: &Ctx, _event: Probe) -> Result<(), FlowError> {
    Ok(())
}

async fn worker_has_looked(client: &flow::Client) {
    let run = client.send(Probe {}).await.unwrap().runs[0].1;
    client.result::<()>(run, WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_run_parks_and_resumes_on_a_new_worker_after_all_were_restarted() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let builder = || {
        common::worker(&store)
            .register::<trial>()
            .register::<probe>()
            .clock(clock.clone())
    };

    let first = common::spawn_worker(builder()).await;
    let run = client
        .send(TrialStarted { account: 42 })
        .await
        .unwrap()
        .runs[0]
        .1;
    common::eventually(WAIT, "the run to sleep", || async {
        common::status(&client, run).await == RunStatus::Sleeping
    })
    .await;
    let report = first.stop().await.unwrap();
    assert_eq!(report.parked, 1, "the sleeping run left the worker");
    assert_eq!(report.finished, 0);

    // No worker is up while the week passes.
    clock.advance(Duration::from_secs(7 * 86_400 - 1));
    let _second = common::spawn_worker(builder()).await;
    worker_has_looked(&client).await;
    assert_eq!(
        common::status(&client, run).await,
        RunStatus::Sleeping,
        "one second early"
    );
    assert_eq!(REMINDERS.load(Ordering::SeqCst), 0);

    clock.advance(Duration::from_secs(1));
    let account: i64 = client.result(run, WAIT).await.unwrap();
    assert_eq!(account, 42);
    assert_eq!(REMINDERS.load(Ordering::SeqCst), 1);
    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(view.steps[0].key, "wait-a-week");
    assert_eq!(view.steps[0].kind, StepKind::Sleep);
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/nap")]
struct Nap {}

#[function(event = "test/nap")]
async fn many_naps(ctx: &Ctx, _event: Nap) -> Result<u32, FlowError> {
    let mut count = 0;
    for _ in 0..3 {
        ctx.sleep("nap", Duration::from_secs(60)).await?;
        count += 1;
    }
    let until = ctx.now().await + chrono::Duration::hours(1);
    ctx.sleep_until("until-the-hour", until).await?;
    Ok(count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeps_in_a_loop_are_numbered_and_sleep_until_waits_for_its_time() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<many_naps>()
            .clock(clock.clone()),
    )
    .await;
    let run = client.send(Nap {}).await.unwrap().runs[0].1;
    for step in 1..=4 {
        common::eventually(WAIT, "the run to sleep", || async {
            let view = client.run(run).await.unwrap().unwrap();
            view.status == RunStatus::Sleeping && view.steps.len() >= step
        })
        .await;
        clock.advance(Duration::from_secs(3600));
    }
    let count: u32 = client.result(run, WAIT).await.unwrap();
    assert_eq!(count, 3);
    let keys: Vec<_> = client
        .run(run)
        .await
        .unwrap()
        .unwrap()
        .steps
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(keys, ["nap", "nap:1", "nap:2", "now", "until-the-hour"]);
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/rate.limited")]
struct RateLimited {}

static API_CALLS: AtomicU32 = AtomicU32::new(0);

#[step]
async fn call_limited_api(_ctx: &Ctx) -> Result<String, StepError> {
    if API_CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(StepError::retry_after(
            "429 Too Many Requests",
            Duration::from_secs(3600),
        ));
    }
    Ok("done".into())
}

#[function(event = "test/rate.limited")]
async fn limited(ctx: &Ctx, _event: RateLimited) -> Result<String, FlowError> {
    Ok(call_limited_api(ctx).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_sets_the_next_attempt() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<limited>()
            .register::<probe>()
            .clock(clock.clone()),
    )
    .await;
    let run = client.send(RateLimited {}).await.unwrap().runs[0].1;
    common::eventually(
        WAIT,
        "the first attempt to fail and the run to back off",
        || async {
            let view = client.run(run).await.unwrap().unwrap();
            !view.failures.is_empty() && view.status == RunStatus::Queued
        },
    )
    .await;
    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(
        view.failures[0].retry_at,
        clock.now() + chrono::Duration::hours(1)
    );
    clock.advance(Duration::from_secs(3599));
    worker_has_looked(&client).await;
    assert_eq!(
        API_CALLS.load(Ordering::SeqCst),
        1,
        "not retried before its time"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(client.result::<String>(run, WAIT).await.unwrap(), "done");
    assert_eq!(API_CALLS.load(Ordering::SeqCst), 2);
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/handover")]
struct Handover {}

#[function(event = "test/handover")]
async fn handover(ctx: &Ctx, _event: Handover) -> Result<String, FlowError> {
    Ok(ctx
        .run("finish", || async {
            Ok::<_, StepError>("done".to_string())
        })
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_learns_the_due_time_of_a_run_another_worker_parked() {
    use flow::store::{ClaimRequest, Committed, Next, Park, Store, Transition};
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    common::worker(&store)
        .register::<handover>()
        .build()
        .unwrap()
        .announce()
        .await
        .unwrap();
    let run = client.send(Handover {}).await.unwrap().runs[0].1;

    // Another worker ("elsewhere") holds the run for an hour.
    let owner: std::sync::Arc<str> = "elsewhere".into();
    let functions = vec!["handover".to_string()];
    let request = ClaimRequest {
        owner: &owner,
        functions: &functions,
        limited: flow::flow_control::Limited::none(),
        max: 1,
        lease: Duration::from_secs(3600),
    };
    let claimed = store
        .claim(request, clock.store_now())
        .await
        .unwrap()
        .remove(0);

    // This worker is idle: nothing is due before that lease ends, an hour away.
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<handover>()
            .clock(clock.clone()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The other worker parks the run for a minute, then is gone.
    let park = Park::sleep(clock.now() + chrono::Duration::minutes(1));
    let parked = store
        .commit(
            &[(claimed.lease.clone(), Transition::next(Next::Park(park)))],
            Duration::from_secs(3600),
            clock.store_now(),
        )
        .await
        .unwrap();
    assert_eq!(parked, [Committed::Written]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(common::status(&client, run).await, RunStatus::Sleeping);
    clock.advance(Duration::from_secs(60));
    assert_eq!(client.result::<String>(run, WAIT).await.unwrap(), "done");
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/forever")]
struct Forever {}

#[function(event = "test/forever")]
async fn forever(ctx: &Ctx, _event: Forever) -> Result<(), FlowError> {
    ctx.sleep("until-the-end", Duration::MAX).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_past_the_end_of_time_parks_the_run_instead_of_panicking() {
    let (store, _) = common::store().await;
    let _worker = common::spawn_worker(common::worker(&store).register::<forever>()).await;
    let client = flow::Client::new(store);
    let run = client.send(Forever {}).await.unwrap().runs[0].1;
    common::eventually(WAIT, "the run to sleep", || async {
        common::status(&client, run).await == RunStatus::Sleeping
    })
    .await;
    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(view.steps[0].key, "until-the-end");
}

#[test]
fn worker_settings_that_would_spin_are_refused_at_build() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (store, _) = rt.block_on(common::store());
    let err = common::worker(&store)
        .register::<forever>()
        .renew_every(Duration::ZERO)
        .build()
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("renew_every must be longer than zero"),
        "{err}"
    );
    let err = common::worker(&store)
        .register::<forever>()
        .lease(Duration::from_secs(1))
        .renew_every(Duration::from_secs(2))
        .build()
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("shorter than four fifths of the lease"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// Machines whose clocks are off by a minute.

/// A machine's clock that is `skew` off the true time, as a worker's host can be
/// without NTP. Like the system clock it leaves the store's times to the database.
struct Skewed(chrono::Duration);

impl Clock for Skewed {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + self.0
    }

    fn sleep_until(
        &self,
        deadline: chrono::DateTime<chrono::Utc>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        flow::SystemClock.sleep_until(deadline - self.0)
    }

    fn store_now(&self) -> flow::Now {
        flow::Now::Database
    }
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/held")]
struct Held {}

static HELD_STARTS: AtomicU32 = AtomicU32::new(0);
static LET_HELD_GO: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);

#[step]
async fn hold(_ctx: &Ctx) -> Result<(), StepError> {
    HELD_STARTS.fetch_add(1, Ordering::SeqCst);
    let _ = LET_HELD_GO.acquire().await.expect("open semaphore");
    Ok(())
}

#[function(event = "test/held")]
async fn held(ctx: &Ctx, _event: Held) -> Result<(), FlowError> {
    Ok(hold(ctx).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_clock_is_a_minute_ahead_takes_no_live_lease() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let lease = |builder: flow::WorkerBuilder<flow::AnyStore>| {
        builder
            .register::<held>()
            .register::<probe>()
            .lease(Duration::from_secs(10))
            .renew_every(Duration::from_secs(2))
    };
    // On time, and busy with the held run (one slot).
    let _on_time = common::spawn_worker(lease(common::worker(&store)).concurrency(1)).await;
    let run = client.send(Held {}).await.unwrap().runs[0].1;
    common::eventually(WAIT, "the held step to start", || async {
        HELD_STARTS.load(Ordering::SeqCst) == 1
    })
    .await;

    // A minute ahead, the held run's lease looks long expired by this machine's
    // clock. It recovers expired leases before every claim, so once it has run
    // the probe it would have taken the held run too.
    let _ahead = common::spawn_worker(
        lease(common::worker(&store)).clock(Skewed(chrono::Duration::seconds(60))),
    )
    .await;
    worker_has_looked(&client).await;
    assert_eq!(HELD_STARTS.load(Ordering::SeqCst), 1, "the live lease held");
    assert_eq!(common::status(&client, run).await, RunStatus::Running);

    LET_HELD_GO.add_permits(1);
    client.result::<()>(run, WAIT).await.unwrap();
    assert_eq!(HELD_STARTS.load(Ordering::SeqCst), 1);
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/short.nap")]
struct ShortNap {}

#[function(event = "test/short.nap")]
async fn short_nap(ctx: &Ctx, _event: ShortNap) -> Result<(), FlowError> {
    ctx.sleep("nap", Duration::from_secs(3)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_clock_is_a_minute_behind_runs_new_work_at_once_and_sleeps_in_full() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _behind = common::spawn_worker(
        common::worker(&store)
            .register::<short_nap>()
            .clock(Skewed(chrono::Duration::seconds(-60))),
    )
    .await;
    // By this machine's clock the run is due in a minute; by the database's, now
    // (the wait is shorter than that minute).
    let run = client.send(ShortNap {}).await.unwrap().runs[0].1;
    client.result::<()>(run, WAIT).await.unwrap();

    let view = client.run(run).await.unwrap().unwrap();
    let started = view.started_at.expect("started");
    let wake_at = view.steps[0].wake_at.expect("a sleep's wake time");
    let nap = chrono::Duration::seconds(3);
    // The wake time is on the database's clock: not a minute early (the offset is
    // measured over a round trip, hence the tolerance of a second).
    assert!(
        wake_at >= started + nap - chrono::Duration::seconds(1),
        "woke at {wake_at}, started at {started}"
    );
    assert!(view.finished_at.expect("finished") >= wake_at);
}
