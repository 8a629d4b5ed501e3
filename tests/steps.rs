//! Steps against a real PostgreSQL: checkpoints, replay, retries, numbering.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flow::prelude::*;
use flow::{RunStatus, StepKind};

const WAIT: Duration = Duration::from_secs(30);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/order.placed")]
struct OrderPlaced {
    order: i64,
}

static FETCHES: AtomicU32 = AtomicU32::new(0);

#[step]
async fn fetch_order(_ctx: &Ctx, order: i64) -> Result<Vec<i64>, StepError> {
    FETCHES.fetch_add(1, Ordering::SeqCst);
    Ok(vec![order, order * 10])
}

#[step(retries = 0)]
async fn total(_ctx: &Ctx, lines: &[i64]) -> Result<i64, StepError> {
    Ok(lines.iter().sum())
}

#[function(event = "test/order.placed")]
async fn price_order(ctx: &Ctx, event: OrderPlaced) -> Result<i64, FlowError> {
    let lines = fetch_order(ctx, event.order).await?;
    let sum = total(ctx, &lines).await?;
    Ok(sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_executes_its_steps_and_stores_each_checkpoint() {
    let (store, _) = common::store().await;
    let (stop, worker) =
        common::spawn_worker(common::worker(&store).register::<price_order>()).await;
    let client = flow::Client::new(store);

    let receipt = client.send(OrderPlaced { order: 7 }).await.unwrap();
    assert_eq!(receipt.runs.len(), 1);
    let run = receipt.runs[0].1;
    let output: i64 = client.result(run, WAIT).await.unwrap();
    assert_eq!(output, 77);

    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(view.status, RunStatus::Completed);
    assert_eq!(view.function_id, "price_order");
    let keys: Vec<_> = view
        .steps
        .iter()
        .map(|s| (s.key.as_str(), s.position, s.kind))
        .collect();
    assert_eq!(
        keys,
        [
            ("fetch_order", 0, StepKind::Run),
            ("total", 1, StepKind::Run)
        ]
    );
    assert_eq!(view.steps[0].output, Some(serde_json::json!([7, 70])));
    assert_eq!(view.steps[1].attempts, 1);
    assert!(view.failures.is_empty());
    stop.send(()).unwrap();
    let report = worker.await.unwrap();
    assert_eq!(report.finished, 1);
}
