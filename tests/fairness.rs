//! Claims are fair across functions: a worker serving a function with a long
//! backlog and another with one new run starts the new run among the first,
//! not after the backlog has drained; for functions with concurrency limits too.

mod common;

use std::time::Duration;

use flow::RunStatus;
use flow::prelude::*;

const WAIT: Duration = Duration::from_secs(60);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/fairness.bulk")]
struct Bulk {
    n: u32,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/fairness.urgent")]
struct Urgent {}

#[function(event = "test/fairness.bulk")]
async fn bulk(_ctx: &Ctx, event: Bulk) -> Result<u32, FlowError> {
    Ok(event.n)
}

#[function(event = "test/fairness.urgent")]
async fn urgent(_ctx: &Ctx, _event: Urgent) -> Result<(), FlowError> {
    Ok(())
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/fairness.limited_bulk")]
struct LimitedBulk {
    n: u32,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/fairness.limited_urgent")]
struct LimitedUrgent {}

#[function(event = "test/fairness.limited_bulk", concurrency = 50)]
async fn limited_bulk(_ctx: &Ctx, event: LimitedBulk) -> Result<u32, FlowError> {
    Ok(event.n)
}

#[function(event = "test/fairness.limited_urgent", concurrency = 50)]
async fn limited_urgent(_ctx: &Ctx, _event: LimitedUrgent) -> Result<(), FlowError> {
    Ok(())
}

/// How many runs of `bulk` started no later than the run of `urgent`.
async fn started_before(store: &flow::AnyStore, bulk: &str, urgent: &str) -> i64 {
    let query = |table: &str| {
        format!(
            "SELECT count(*) FROM {table} WHERE function_id = '{bulk}'
               AND started_at <= (SELECT started_at FROM {table} WHERE function_id = '{urgent}')"
        )
    };
    common::count(store, &query("flow.runs"), &query("flow_runs")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_limited_functions_backlog_does_not_hold_up_another_limited_function() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let builder = || {
        common::worker(&store)
            .concurrency(2)
            .register::<limited_bulk>()
            .register::<limited_urgent>()
    };
    builder().build().unwrap().announce().await.unwrap();
    let backlog = client
        .send_batch((0..300).map(|n| LimitedBulk { n }))
        .await
        .unwrap();
    assert_eq!(backlog.runs.len(), 300);
    let run = client.send(LimitedUrgent {}).await.unwrap().runs[0].1;
    let _worker = common::spawn_worker(builder()).await;
    let view = client.wait(run, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Completed, "{:?}", view.error);
    let before = started_before(&store, "limited_bulk", "limited_urgent").await;
    assert!(
        before < 30,
        "{before} runs of `limited_bulk` started before `limited_urgent`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_functions_backlog_does_not_hold_up_another_functions_run() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let builder = || {
        common::worker(&store)
            .concurrency(2)
            .register::<bulk>()
            .register::<urgent>()
    };
    builder().build().unwrap().announce().await.unwrap();
    // A backlog of 300 runs of `bulk`, all due before the one run of `urgent`.
    let backlog = client
        .send_batch((0..300).map(|n| Bulk { n }))
        .await
        .unwrap();
    assert_eq!(backlog.runs.len(), 300);
    let run = client.send(Urgent {}).await.unwrap().runs[0].1;
    let _worker = common::spawn_worker(builder()).await;
    let view = client.wait(run, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Completed, "{:?}", view.error);
    // In due order it would start after all 300; fairly, among the first.
    let before = started_before(&store, "bulk", "urgent").await;
    assert!(
        before < 30,
        "{before} runs of `bulk` started before `urgent`"
    );
}
