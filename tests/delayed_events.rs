//! An event whose timestamp is in the future delays the runs it starts until
//! then (against a test clock); a start timeout counts from that time, not from
//! the send; a timestamp more than 366 days ahead is refused, naming the event.

mod common;

use std::time::Duration;

use flow::prelude::*;
use flow::{NewEvent, RunStatus};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/delayed.reminder")]
struct Reminder {
    n: u32,
}

/// Must start within ten minutes of being due.
#[function(event = "test/delayed.reminder", timeouts(start = "10m"))]
async fn remind(_ctx: &Ctx, reminder: Reminder) -> Result<u32, FlowError> {
    Ok(reminder.n)
}

/// The test clock's start (`common::clock`).
const START: &str = "2026-03-01T09:00:00Z";

fn reminder(n: u32, ts: &str) -> NewEvent {
    NewEvent::raw("test/delayed.reminder", json!({ "n": n }))
        .unwrap()
        .ts(ts.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_future_timestamp_delays_the_run_until_then() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let builder = || {
        common::worker(&store)
            .clock(clock.clone())
            .register::<remind>()
    };
    builder().build().unwrap().announce().await.unwrap();
    // Due in an hour; a second one, sent after it, is due now.
    let later = client
        .send(reminder(1, "2026-03-01T10:00:00Z"))
        .await
        .unwrap()
        .runs[0]
        .1;
    let now = client.send(reminder(2, START)).await.unwrap().runs[0].1;
    let _worker = common::spawn_worker(builder()).await;
    let n: u32 = client.result(now, WAIT).await.unwrap();
    assert_eq!(n, 2);
    // The one sent first is still queued: it is not due.
    let view = client.run(later).await.unwrap().unwrap();
    assert_eq!(view.status, RunStatus::Queued);
    // An hour on (past its ten-minute start timeout from the send, which counts
    // from when it is due), it runs.
    clock.advance(Duration::from_secs(3600));
    let view = client.wait(later, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Completed, "{:?}", view.error);
    let due: chrono::DateTime<chrono::Utc> = "2026-03-01T10:00:00Z".parse().unwrap();
    assert!(view.started_at.unwrap() >= due);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_more_than_366_days_ahead_is_refused() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let far = chrono::Utc::now() + chrono::Duration::days(400);
    let event = NewEvent::raw("test/delayed.reminder", json!({ "n": 3 }))
        .unwrap()
        .ts(far);
    let err = client.send(event).await.unwrap_err();
    assert!(matches!(err, flow::Error::InvalidEvent(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("`test/delayed.reminder`") && message.contains("366 days ahead"),
        "{message}"
    );
    let stored = common::count(
        &store,
        "SELECT count(*) FROM flow.events",
        "SELECT count(*) FROM flow_events",
    )
    .await;
    assert_eq!(stored, 0, "nothing was stored");
}
