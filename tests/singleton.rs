//! `singleton(key, mode)`: at most one active run per key, decided when the event
//! is sent. `mode = skip`: an event starts nothing while a run of its key is
//! active, and the receipt names that run; `mode = cancel`: it cancels that run
//! and starts its own. A run that ended frees its key; concurrent senders of one
//! key start one run.

mod common;

use std::time::Duration;

use flow::catalog::SkipReason;
use flow::prelude::*;
use flow::{Connect, RunStatus};

const WAIT: Duration = Duration::from_secs(60);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/singleton.sync")]
struct Sync {
    user: String,
}

fn sync_of(user: &str) -> Sync {
    Sync { user: user.into() }
}

#[function(event = "test/singleton.sync", singleton(key = "event.data.user", mode = skip))]
async fn sync(_ctx: &Ctx, event: Sync) -> Result<String, FlowError> {
    Ok(event.user)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/singleton.import")]
struct Import {
    user: String,
    n: u32,
}

#[function(
    event = "test/singleton.import",
    singleton(key = "event.data.user", mode = cancel)
)]
async fn import(_ctx: &Ctx, event: Import) -> Result<u32, FlowError> {
    Ok(event.n)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/singleton.report")]
struct Report {
    day: u32,
}

/// One run at a time for the whole function.
#[function(event = "test/singleton.report", singleton(mode = skip))]
async fn report(_ctx: &Ctx, event: Report) -> Result<u32, FlowError> {
    Ok(event.day)
}

fn announced(store: &flow::AnyStore) -> flow::WorkerBuilder<flow::AnyStore> {
    common::worker(store)
        .register::<sync>()
        .register::<import>()
        .register::<report>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_starts_nothing_while_a_run_of_the_key_is_active() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    announced(&store).build().unwrap().announce().await.unwrap();

    // No worker yet: the first run of `a` stays queued, which is active.
    let first = client.send(sync_of("a")).await.unwrap().runs[0].1;
    let again = client.send(sync_of("a")).await.unwrap();
    assert!(again.runs.is_empty());
    assert_eq!(
        again.skipped[0].reason,
        SkipReason::Singleton {
            key: "a".into(),
            active: first
        }
    );
    assert!(
        again.skipped[0]
            .reason
            .to_string()
            .contains(&first.to_string()),
        "{}",
        again.skipped[0].reason
    );
    // Another key is not held; two events of one key in a send start one run.
    let batch = client
        .send_batch([sync_of("b"), sync_of("c"), sync_of("c")])
        .await
        .unwrap();
    assert_eq!(batch.runs.len(), 2);
    assert_eq!(batch.skipped.len(), 1);
    assert_eq!(batch.skipped[0].event, batch.event_ids[2]);
    assert_eq!(
        batch.skipped[0].reason,
        SkipReason::SingletonInSend { key: "c".into() }
    );
    // A function-wide singleton.
    let day1 = client.send(Report { day: 1 }).await.unwrap();
    assert_eq!(day1.runs.len(), 1);
    assert!(
        client
            .send(Report { day: 2 })
            .await
            .unwrap()
            .runs
            .is_empty()
    );

    // Once the run has ended, its key is free.
    let worker = common::spawn_worker(announced(&store)).await;
    for run in [first, day1.runs[0].1] {
        assert_eq!(
            client.wait(run, WAIT).await.unwrap().status,
            RunStatus::Completed
        );
    }
    let later = client.send(sync_of("a")).await.unwrap();
    assert_eq!(later.runs.len(), 1, "{:?}", later.skipped);
    assert_eq!(client.send(Report { day: 3 }).await.unwrap().runs.len(), 1);
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_cancels_the_active_run_and_starts_the_new_one() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    announced(&store).build().unwrap().announce().await.unwrap();
    let import_of = |n| Import {
        user: "a".into(),
        n,
    };

    let first = client.send(import_of(1)).await.unwrap().runs[0].1;
    let second = client.send(import_of(2)).await.unwrap();
    assert_eq!(second.runs.len(), 1);
    let second = second.runs[0].1;
    let view = client.run(first).await.unwrap().unwrap();
    assert_eq!(view.status, RunStatus::Cancelled);
    let reason = view.error.unwrap();
    assert!(
        reason.contains(&second.to_string()) && reason.contains("singleton mode cancel"),
        "{reason}"
    );
    assert_eq!(common::status(&client, second).await, RunStatus::Queued);

    // In one send, the last event of a key starts the run.
    let batch = client
        .send_batch([import_of(3), import_of(4)])
        .await
        .unwrap();
    assert_eq!(batch.runs.len(), 1);
    assert_eq!(batch.runs[0].0, batch.event_ids[1]);
    assert_eq!(batch.skipped[0].event, batch.event_ids[0]);
    assert_eq!(common::status(&client, second).await, RunStatus::Cancelled);

    let worker = common::spawn_worker(announced(&store)).await;
    let view = client.wait(batch.runs[0].1, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Completed);
    assert_eq!(view.output, Some(serde_json::json!(4)));
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_of_one_key_start_one_run() {
    let (store, url) = common::store().await;
    announced(&store).build().unwrap().announce().await.unwrap();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let url = url.clone();
        senders.spawn(async move {
            let client = flow::Client::new(flow::AnyStore::connect(&url).await.unwrap());
            let mut started = 0;
            for user in ["x", "y", "z"] {
                started += client.send(sync_of(user)).await.unwrap().runs.len();
            }
            started
        });
    }
    let started: usize = senders.join_all().await.into_iter().sum();
    assert_eq!(started, 3, "one run per key across all senders");
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/singleton.order")]
struct Order {
    user: String,
    order: u32,
}

#[function(
    event = "test/singleton.order",
    singleton(key = "event.data.user", mode = skip),
    idempotency = "event.data.order"
)]
async fn fulfil(_ctx: &Ctx, event: Order) -> Result<u32, FlowError> {
    Ok(event.order)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_event_of_a_key_in_a_send_is_picked_even_when_its_idempotency_key_is_taken() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    common::worker(&store)
        .register::<fulfil>()
        .build()
        .unwrap()
        .announce()
        .await
        .unwrap();
    let order = |order| Order {
        user: "x".into(),
        order,
    };
    let first = client.send(order(1)).await.unwrap().runs[0].1;
    let view = client.cancel(first, "done with it").await.unwrap();
    assert_eq!(view.status, RunStatus::Cancelled);
    // The key is free again; order 1's idempotency key is not.
    let batch = client.send_batch([order(1), order(2)]).await.unwrap();
    assert!(batch.runs.is_empty(), "{:?}", batch.runs);
    let reasons: Vec<&SkipReason> = batch.skipped.iter().map(|s| &s.reason).collect();
    assert_eq!(
        reasons,
        [
            &SkipReason::Idempotency { key: "1".into() },
            &SkipReason::SingletonInSend { key: "x".into() }
        ]
    );
}
