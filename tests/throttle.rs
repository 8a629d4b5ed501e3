//! `throttle(limit, period, burst, key, scope)`: run starts are spread, `limit`
//! per `period` (one every `period / limit`, up to `limit + burst` at once after a
//! quiet spell), per key, first in first out; none is dropped. A run that has
//! started (and sleeps, then wakes) is not held again. Shared by name across
//! functions. Against a test clock, so every wait is for an event.

mod common;

use std::time::Duration;

use flow::prelude::*;
use flow::{RunId, RunStatus};

const WAIT: Duration = Duration::from_secs(60);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/throttle.call")]
struct Call {
    customer: String,
}

fn call(customer: &str) -> Call {
    Call {
        customer: customer.into(),
    }
}

/// Two starts a minute per customer: two at once, then one every 30 s.
#[function(
    event = "test/throttle.call",
    throttle(limit = 2, period = "1m", key = "event.data.customer")
)]
async fn api(_ctx: &Ctx, call: Call) -> Result<String, FlowError> {
    Ok(call.customer)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/throttle.shared")]
struct Shared {
    n: u32,
}

/// One start an hour between the two functions naming "vendor".
#[function(
    event = "test/throttle.shared",
    throttle(limit = 1, period = "1h", scope = shared("vendor"))
)]
async fn first_user(_ctx: &Ctx, event: Shared) -> Result<u32, FlowError> {
    Ok(event.n)
}

#[function(
    event = "test/throttle.shared",
    throttle(limit = 1, period = "1h", scope = shared("vendor"))
)]
async fn second_user(_ctx: &Ctx, event: Shared) -> Result<u32, FlowError> {
    Ok(event.n)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/throttle.slow")]
struct Slow {
    n: u32,
}

/// One start an hour; each run sleeps a minute first.
#[function(event = "test/throttle.slow", throttle(limit = 1, period = "1h"))]
async fn sleeper(ctx: &Ctx, event: Slow) -> Result<u32, FlowError> {
    ctx.sleep("nap", Duration::from_secs(60)).await?;
    Ok(event.n)
}

async fn completed(client: &flow::Client, run: RunId) {
    let view = client.wait(run, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Completed, "{:?}", view.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_are_spread_per_key_first_in_first_out_and_none_is_dropped() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let builder = || {
        common::worker(&store)
            .clock(clock.clone())
            .register::<api>()
    };
    builder().build().unwrap().announce().await.unwrap();
    let mut a = Vec::new();
    for _ in 0..4 {
        a.push(client.send(call("a")).await.unwrap().runs[0].1);
    }
    let b = client.send(call("b")).await.unwrap().runs[0].1;

    let worker = common::spawn_worker(builder()).await;
    // Two of `a` at once, and `b` beside them: another key.
    for run in [a[0], a[1], b] {
        completed(&client, run).await;
    }
    // The third and fourth of `a` are not due before their key's next start.
    assert_eq!(common::status(&client, a[2]).await, RunStatus::Queued);
    assert_eq!(common::status(&client, a[3]).await, RunStatus::Queued);
    clock.advance(Duration::from_secs(30));
    completed(&client, a[2]).await;
    assert_eq!(common::status(&client, a[3]).await, RunStatus::Queued);
    clock.advance(Duration::from_secs(30));
    completed(&client, a[3]).await;
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_throttle_counts_the_starts_of_every_function_naming_it() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let builder = || {
        common::worker(&store)
            .clock(clock.clone())
            .register::<first_user>()
            .register::<second_user>()
    };
    builder().build().unwrap().announce().await.unwrap();
    // One event starts a run of each: one of them waits an hour.
    let runs = client.send(Shared { n: 1 }).await.unwrap().runs;
    assert_eq!(runs.len(), 2);
    let worker = common::spawn_worker(builder()).await;
    let done = tokio::select! {
        view = client.wait(runs[0].1, WAIT) => (view.unwrap(), runs[1].1),
        view = client.wait(runs[1].1, WAIT) => (view.unwrap(), runs[0].1),
    };
    assert_eq!(done.0.status, RunStatus::Completed);
    assert_eq!(common::status(&client, done.1).await, RunStatus::Queued);
    clock.advance(Duration::from_secs(3600));
    completed(&client, done.1).await;
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_started_is_not_held_again_when_it_wakes() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let worker = common::spawn_worker(
        common::worker(&store)
            .clock(clock.clone())
            .register::<sleeper>(),
    )
    .await;
    let first = client.send(Slow { n: 1 }).await.unwrap().runs[0].1;
    common::eventually(WAIT, "the first run sleeps", || async {
        common::status(&client, first).await == RunStatus::Sleeping
    })
    .await;
    let second = client.send(Slow { n: 2 }).await.unwrap().runs[0].1;
    // The first wakes and finishes within the hour the throttle holds the second.
    clock.advance(Duration::from_secs(60));
    completed(&client, first).await;
    assert_eq!(common::status(&client, second).await, RunStatus::Queued);
    clock.advance(Duration::from_secs(3600));
    common::eventually(WAIT, "the second run starts and sleeps", || async {
        common::status(&client, second).await == RunStatus::Sleeping
    })
    .await;
    clock.advance(Duration::from_secs(60));
    completed(&client, second).await;
    worker.stop().await.unwrap();
}
