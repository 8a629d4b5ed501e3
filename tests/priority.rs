//! `priority = "<CEL int seconds>"`: a run jumps the backlog by that many seconds
//! (a negative value waits that long behind it), decided when the event is sent.
//! A value that is not a whole number of seconds starts the run without a
//! priority, and one past the bounds is held to them; the receipt says so.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use flow::catalog::MAX_PRIORITY;
use flow::prelude::*;
use flow::{NewEvent, RunStatus};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/priority.ticket")]
struct Ticket {
    n: u32,
    boost: i64,
}

/// The tickets in the order their runs started.
static STARTED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[function(event = "test/priority.ticket", priority = "event.data.boost")]
async fn answer(_ctx: &Ctx, ticket: Ticket) -> Result<u32, FlowError> {
    STARTED.lock().unwrap().push(ticket.n);
    Ok(ticket.n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_priority_jumps_the_backlog() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    // One slot, so runs start one by one in the claim's order.
    let builder = || common::worker(&store).concurrency(1).register::<answer>();
    builder().build().unwrap().announce().await.unwrap();
    let mut runs = Vec::new();
    for n in 0..5 {
        let receipt = client.send(Ticket { n, boost: 0 }).await.unwrap();
        runs.push(receipt.runs[0].1);
    }
    // Sent last, but two minutes ahead of the others.
    let receipt = client.send(Ticket { n: 5, boost: 120 }).await.unwrap();
    assert!(receipt.unevaluated.is_empty(), "{:?}", receipt.unevaluated);
    runs.push(receipt.runs[0].1);

    let worker = common::spawn_worker(builder()).await;
    for run in runs {
        let view = client.wait(run, WAIT).await.unwrap();
        assert_eq!(view.status, RunStatus::Completed, "{:?}", view.error);
    }
    worker.stop().await.unwrap();
    assert_eq!(*STARTED.lock().unwrap(), [5, 0, 1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_priority_waits_that_long() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let worker = common::spawn_worker(
        common::worker(&store)
            .clock(clock.clone())
            .register::<answer>(),
    )
    .await;
    let later = client.send(Ticket { n: 1, boost: -60 }).await.unwrap().runs[0].1;
    let now = client.send(Ticket { n: 2, boost: 0 }).await.unwrap().runs[0].1;
    assert_eq!(
        client.wait(now, WAIT).await.unwrap().status,
        RunStatus::Completed
    );
    // Not due for another minute of the test's clock.
    assert_eq!(common::status(&client, later).await, RunStatus::Queued);
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        client.wait(later, WAIT).await.unwrap().status,
        RunStatus::Completed
    );
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priority_that_is_not_whole_seconds_or_out_of_bounds_is_reported() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    common::worker(&store)
        .register::<answer>()
        .build()
        .unwrap()
        .announce()
        .await
        .unwrap();
    for (boost, problem) in [
        (json!("high"), "not a whole number of seconds"),
        (json!(1.5), "not a whole number of seconds"),
        (json!(100_000), "held to"),
        (json!(-100_000), "held to"),
    ] {
        let event = NewEvent::raw("test/priority.ticket", json!({"n": 1, "boost": boost})).unwrap();
        let receipt = client.send(event).await.unwrap();
        assert_eq!(receipt.runs.len(), 1, "the run starts all the same");
        assert_eq!(
            receipt.unevaluated.len(),
            1,
            "{boost}: {:?}",
            receipt.unevaluated
        );
        let reported = &receipt.unevaluated[0].problem;
        assert!(
            reported.contains(problem) && reported.contains("event.data.boost"),
            "{boost}: {reported}"
        );
    }
    assert!(MAX_PRIORITY.as_secs() >= 600);
}
