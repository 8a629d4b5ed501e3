//! `rate_limit(limit, period, key)`: at most `limit` runs start per `period` per
//! key, decided when the event is sent; an event over it starts nothing, and the
//! run it would have started is recorded as skipped with the reason, visible
//! through the client. Other keys, and other functions the event triggers, are
//! not affected; the limit frees up as time passes (a test clock); concurrent
//! senders agree; a key that does not evaluate starts the run and says so.

mod common;

use std::time::Duration;

use flow::catalog::SkipReason;
use flow::prelude::*;
use flow::{Connect, NewEvent, RunId, RunStatus, SendReceipt};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/rate_limit.signal")]
struct Signal {
    user: String,
}

fn signal(user: &str) -> Signal {
    Signal { user: user.into() }
}

/// Two alerts an hour per user: two at once, then one every 30 minutes.
#[function(
    event = "test/rate_limit.signal",
    rate_limit(limit = 2, period = "1h", key = "event.data.user")
)]
async fn alert(_ctx: &Ctx, signal: Signal) -> Result<String, FlowError> {
    Ok(signal.user)
}

/// Triggered by the same event, without a limit: every event starts one.
#[function(event = "test/rate_limit.signal")]
async fn record(_ctx: &Ctx, _signal: Signal) -> Result<(), FlowError> {
    Ok(())
}

/// The run of `alert` a receipt started, if any.
async fn alert_run(client: &flow::Client, receipt: &SendReceipt) -> Option<RunId> {
    for (_, run) in &receipt.runs {
        if client.run(*run).await.unwrap().unwrap().function_id == "alert" {
            return Some(*run);
        }
    }
    None
}

/// The run a receipt says the rate limit skipped, with its key.
fn rate_limited(receipt: &SendReceipt) -> (String, RunId) {
    match receipt.skipped.as_slice() {
        [skip] => match &skip.reason {
            SkipReason::RateLimited { key, run } => {
                assert_eq!(skip.function, "alert");
                (key.clone(), *run)
            }
            other => panic!("skipped for another reason: {other}"),
        },
        other => panic!("expected one skipped run, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_over_the_limit_start_nothing_and_their_runs_are_recorded_as_skipped() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let builder = || {
        common::worker(&store)
            .clock(clock.clone())
            .register::<alert>()
            .register::<record>()
    };
    builder().build().unwrap().announce().await.unwrap();

    // Two of `a` start; the third does not, but `record` still runs for it.
    let mut started = Vec::new();
    for _ in 0..2 {
        let receipt = client.send(signal("a")).await.unwrap();
        assert!(receipt.skipped.is_empty(), "{:?}", receipt.skipped);
        started.push(alert_run(&client, &receipt).await.expect("an alert"));
    }
    let third = client.send(signal("a")).await.unwrap();
    assert_eq!(third.runs.len(), 1, "only `record` started");
    assert!(alert_run(&client, &third).await.is_none());
    let (key, skipped) = rate_limited(&third);
    assert_eq!(key, "a");
    let view = client
        .run(skipped)
        .await
        .unwrap()
        .expect("the skipped run is recorded");
    assert_eq!(view.status, RunStatus::Skipped);
    assert_eq!(view.function_id, "alert");
    assert_eq!(view.event_id, third.event_ids[0]);
    let error = view.error.clone().unwrap();
    assert!(
        error.contains("allows 2 runs per 1h for rate-limit key `a`"),
        "{error}"
    );
    // It has ended: waiting returns at once, and its result is an error naming it.
    let waited = client.wait(skipped, WAIT).await.unwrap();
    assert_eq!(waited.status, RunStatus::Skipped);
    let result = client.result::<String>(skipped, WAIT).await;
    assert!(
        matches!(
            result,
            Err(flow::Error::RunFailed {
                status: RunStatus::Skipped,
                ..
            })
        ),
        "{result:?}"
    );
    // Nor can it be cancelled.
    let cancelled = client.cancel(skipped, "too late").await;
    assert!(
        matches!(
            cancelled,
            Err(flow::Error::AlreadyEnded {
                status: RunStatus::Skipped,
                ..
            })
        ),
        "{cancelled:?}"
    );

    // Another user has a limit of its own.
    let other = client.send(signal("b")).await.unwrap();
    assert!(other.skipped.is_empty());

    // Half an hour on, one more start of `a` is allowed, and only one.
    clock.advance(Duration::from_secs(30 * 60));
    let later = client.send(signal("a")).await.unwrap();
    started.push(
        alert_run(&client, &later)
            .await
            .expect("an alert after 30 min"),
    );
    let again = client.send(signal("a")).await.unwrap();
    rate_limited(&again);

    let worker = common::spawn_worker(builder()).await;
    for run in started {
        let view = client.wait(run, WAIT).await.unwrap();
        assert_eq!(view.status, RunStatus::Completed, "{:?}", view.error);
    }
    // The worker never starts a skipped run.
    assert_eq!(common::status(&client, skipped).await, RunStatus::Skipped);
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_one_send_count_in_order() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    common::worker(&store)
        .register::<alert>()
        .build()
        .unwrap()
        .announce()
        .await
        .unwrap();
    let receipt = client
        .send_batch([signal("c"), signal("c"), signal("c"), signal("d")])
        .await
        .unwrap();
    assert_eq!(receipt.runs.len(), 3, "two of `c` and one of `d`");
    let (key, _) = rate_limited(&receipt);
    assert_eq!(key, "c");
    assert_eq!(
        receipt.skipped[0].event, receipt.event_ids[2],
        "the third event of `c` is the one over the limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_start_no_more_than_the_limit() {
    let (store, url) = common::store().await;
    common::worker(&store)
        .register::<alert>()
        .build()
        .unwrap()
        .announce()
        .await
        .unwrap();
    // Eight senders, each with a store of its own, send one user's signal five
    // times each at once: two of the forty start.
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let url = url.clone();
        senders.spawn(async move {
            let client = flow::Client::new(flow::AnyStore::connect(&url).await.unwrap());
            let mut started = 0;
            for _ in 0..5 {
                let receipt = client.send(signal("e")).await.unwrap();
                assert_eq!(receipt.runs.len() + receipt.skipped.len(), 1);
                started += receipt.runs.len();
            }
            started
        });
    }
    let started: usize = senders.join_all().await.into_iter().sum();
    assert_eq!(started, 2, "a limit of two across all senders");
    for (status, n) in [("skipped", 38), ("queued", 2)] {
        let postgres = format!("SELECT count(*) FROM flow.runs WHERE status = '{status}'");
        let sqlite = format!("SELECT count(*) FROM flow_runs WHERE status = '{status}'");
        assert_eq!(
            common::count(&store, &postgres, &sqlite).await,
            n,
            "{status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_does_not_evaluate_starts_the_run_and_says_why() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    common::worker(&store)
        .register::<alert>()
        .build()
        .unwrap()
        .announce()
        .await
        .unwrap();
    // Sent by a producer that does not use the Rust type: no `user`.
    for _ in 0..3 {
        let event = NewEvent::raw("test/rate_limit.signal", json!({"name": "x"})).unwrap();
        let receipt = client.send(event).await.unwrap();
        assert_eq!(receipt.runs.len(), 1);
        assert!(receipt.skipped.is_empty());
        let problem = &receipt.unevaluated[0].problem;
        assert!(problem.starts_with("rate_limit not applied"), "{problem}");
    }
}
