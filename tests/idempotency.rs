//! `idempotency = "<CEL>"`: one run per key and function per 24 hours, decided when
//! the event is sent. The receipt names the runs that did not start and why;
//! other functions the event triggers are not affected; a key that does not
//! evaluate starts the run and says so; concurrent senders agree; a sender whose
//! catalog is stale learns the current rules before it stores anything; events
//! sent by a step and inside the caller's transaction are keyed too.

mod common;

use std::time::Duration;

use flow::catalog::{SendRules, SkipReason};
use flow::prelude::*;
use flow::store::{FunctionInfo, Store};
use flow::{Connect, NewEvent, RunStatus, SendInTransaction, SendReceipt};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/idempotency.order")]
struct Order {
    order_id: u64,
    customer: String,
}

fn order(order_id: u64) -> Order {
    Order {
        order_id,
        customer: "c-1".into(),
    }
}

#[function(event = "test/idempotency.order", idempotency = "event.data.order_id")]
async fn charge(_ctx: &Ctx, order: Order) -> Result<u64, FlowError> {
    Ok(order.order_id)
}

/// Triggered by the same event, without a key: every event starts one.
#[function(event = "test/idempotency.order")]
async fn audit(_ctx: &Ctx, _order: Order) -> Result<(), FlowError> {
    Ok(())
}

async fn announced(store: &flow::AnyStore) -> flow::Client {
    let worker = common::worker(store)
        .register::<charge>()
        .register::<audit>()
        .build()
        .unwrap();
    worker.announce().await.unwrap();
    flow::Client::new(store.clone())
}

/// The functions of the runs a receipt lists, in order.
async fn functions_of(client: &flow::Client, receipt: &SendReceipt) -> Vec<String> {
    let mut functions = Vec::new();
    for (_, run) in &receipt.runs {
        functions.push(client.run(*run).await.unwrap().unwrap().function_id);
    }
    functions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_per_key_and_the_receipt_names_the_events_that_started_none() {
    let (store, _) = common::store().await;
    let client = announced(&store).await;

    // In one send: the first event of a key starts the run, the second does not.
    let first = client
        .send_batch([order(1), order(1), order(2)])
        .await
        .unwrap();
    assert_eq!(
        functions_of(&client, &first).await,
        ["audit", "charge", "audit", "audit", "charge"],
        "charge ran for orders 1 and 2 once each, audit for every event"
    );
    assert_eq!(first.skipped.len(), 1, "{:?}", first.skipped);
    let skipped = &first.skipped[0];
    assert_eq!(skipped.event, first.event_ids[1]);
    assert_eq!(skipped.function, "charge");
    assert_eq!(skipped.reason, SkipReason::Idempotency { key: "1".into() });
    assert!(
        skipped.reason.to_string().contains("idempotency key `1`"),
        "{}",
        skipped.reason
    );
    assert!(first.unmatched.is_empty(), "{:?}", first.unmatched);
    assert!(first.unevaluated.is_empty(), "{:?}", first.unevaluated);

    // In a later send too.
    let again = client.send(order(1)).await.unwrap();
    assert_eq!(functions_of(&client, &again).await, ["audit"]);
    assert_eq!(again.skipped.len(), 1);
    assert_eq!(again.skipped[0].event, again.event_ids[0]);

    // A run that was kept runs as usual.
    let worker = common::spawn_worker(
        common::worker(&store)
            .register::<charge>()
            .register::<audit>(),
    )
    .await;
    for (_, run) in first.runs.iter().chain(&again.runs) {
        let view = client.wait(*run, WAIT).await.unwrap();
        assert_eq!(view.status, RunStatus::Completed, "{:?}", view.error);
    }
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_starts_a_run_again_once_24_hours_have_passed() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = announced(&store).await.with_clock(clock.clone());
    let charged = |r: &SendReceipt| r.runs.len() == 2;

    assert!(charged(&client.send(order(7)).await.unwrap()));
    clock.advance(Duration::from_secs(24 * 3600 - 1));
    let within = client.send(order(7)).await.unwrap();
    assert!(
        !charged(&within),
        "a second short of 24 hours: {:?}",
        within.runs
    );
    clock.advance(Duration::from_secs(1));
    assert!(
        charged(&client.send(order(7)).await.unwrap()),
        "24 hours after the first, the key is free"
    );
    // And held again from then.
    assert!(!charged(&client.send(order(7)).await.unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_does_not_evaluate_starts_the_run_and_the_receipt_says_why() {
    let (store, _) = common::store().await;
    let client = announced(&store).await;
    // A producer without the Rust type sent an order without its id.
    let event = NewEvent::raw("test/idempotency.order", json!({"customer": "c-1"})).unwrap();
    let receipt = client.send(event.clone()).await.unwrap();
    assert_eq!(receipt.runs.len(), 2, "both functions started");
    assert!(receipt.skipped.is_empty());
    assert_eq!(receipt.unevaluated.len(), 1, "{:?}", receipt.unevaluated);
    let problem = &receipt.unevaluated[0];
    assert_eq!(problem.function, "charge");
    assert_eq!(problem.event, receipt.event_ids[0]);
    assert!(
        problem.problem.contains("event.data.order_id"),
        "{}",
        problem.problem
    );
    // Nothing was claimed for it: the same event starts charge again.
    assert_eq!(client.send(event).await.unwrap().runs.len(), 2);

    // A key too long to store is not applied either, and never fails the send.
    let long = "x".repeat(flow::MATCH_VALUE_BYTES + 1);
    let event = NewEvent::raw("test/idempotency.order", json!({"order_id": long})).unwrap();
    let receipt = client.send(event).await.unwrap();
    assert_eq!(receipt.runs.len(), 2);
    assert!(
        receipt.unevaluated[0].problem.contains("bytes long"),
        "{:?}",
        receipt.unevaluated
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_start_one_run_per_key() {
    let (store, url) = common::store().await;
    announced(&store).await;
    // Eight senders, each with a store of its own (its own connections and
    // catalog), send the same ten orders at once.
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let url = url.clone();
        senders.spawn(async move {
            let client = flow::Client::new(flow::AnyStore::connect(&url).await.unwrap());
            let mut charged = 0;
            for id in 0..10 {
                let receipt = client.send(order(id)).await.unwrap();
                charged += receipt.runs.len() - 1;
                assert_eq!(receipt.runs.len() - 1 + receipt.skipped.len(), 1);
            }
            charged
        });
    }
    let charged: usize = senders.join_all().await.into_iter().sum();
    assert_eq!(charged, 10, "one charge per order across all senders");
    assert_eq!(
        common::count(
            &store,
            "SELECT count(*) FROM flow.runs WHERE function_id = 'charge'",
            "SELECT count(*) FROM flow_runs WHERE function_id = 'charge'",
        )
        .await,
        10
    );
}

fn info(rules: Option<&str>) -> FunctionInfo {
    let mut info = FunctionInfo::new("hand-made", "test/idempotency.hand");
    info.send_rules = SendRules {
        idempotency: rules.map(str::to_owned),
        ..SendRules::default()
    };
    info
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_applies_the_rules_announced_after_its_last_send() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let send = |data: serde_json::Value| {
        let client = &client;
        async move {
            let event = NewEvent::raw("test/idempotency.hand", data).unwrap();
            client.send(event).await.unwrap().runs.len()
        }
    };
    // Announced without rules; the client sends (and keeps that catalog).
    store
        .register_functions(&[info(None)], at(0))
        .await
        .unwrap();
    assert_eq!(send(json!({"a": 1, "b": 1})).await, 1);
    assert_eq!(send(json!({"a": 1, "b": 1})).await, 1);
    // A deploy adds a key: the client's next send learns it.
    store
        .register_functions(&[info(Some("event.data.a"))], at(10))
        .await
        .unwrap();
    assert_eq!(send(json!({"a": 1, "b": 1})).await, 1);
    assert_eq!(send(json!({"a": 1, "b": 2})).await, 0, "same `a`");
    // Another changes the key.
    store
        .register_functions(&[info(Some("event.data.b"))], at(20))
        .await
        .unwrap();
    assert_eq!(send(json!({"a": 1, "b": 3})).await, 1, "a new `b`");
    assert_eq!(send(json!({"a": 2, "b": 3})).await, 0, "same `b`");
    // Another removes it, while the version with `b` is still served: a
    // configuration no worker served lately is a new version again.
    let later = 20 + flow::catalog::VERSION_LIVENESS.as_secs() + 10;
    store
        .keep_announced(&[info(Some("event.data.b"))], at(later - 1))
        .await
        .unwrap();
    store
        .register_functions(&[info(None)], at(later))
        .await
        .unwrap();
    assert_eq!(send(json!({"a": 2, "b": 3})).await, 1);
}

fn at(seconds: u64) -> flow::Now {
    let start: chrono::DateTime<chrono::Utc> = "2026-03-01T09:00:00Z".parse().unwrap();
    flow::Now::At(start + Duration::from_secs(seconds))
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/idempotency.batch")]
struct Batch {
    orders: Vec<u64>,
}

/// Sends one order event per id, as a step.
#[function(event = "test/idempotency.batch")]
async fn fan_out(ctx: &Ctx, batch: Batch) -> Result<usize, FlowError> {
    let orders: Vec<Order> = batch.orders.into_iter().map(order).collect();
    let receipt = ctx.send_event("orders", orders).await?;
    Ok(receipt.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_step_sends_are_keyed_too() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let worker = common::spawn_worker(
        common::worker(&store)
            .register::<fan_out>()
            .register::<charge>(),
    )
    .await;
    let run = client
        .send(Batch {
            orders: vec![5, 5, 6, 5],
        })
        .await
        .unwrap()
        .runs[0]
        .1;
    let view = client.wait(run, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Completed, "{:?}", view.error);
    worker.stop().await.unwrap();
    assert_eq!(
        common::count(
            &store,
            "SELECT count(*) FROM flow.runs WHERE function_id = 'charge'",
            "SELECT count(*) FROM flow_runs WHERE function_id = 'charge'",
        )
        .await,
        2,
        "orders 5 and 6 charged once each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_in_the_callers_transaction_are_keyed_too() {
    if common::backend() == "sqlite" {
        return; // send_in is PostgreSQL's.
    }
    let (store, url) = common::store().await;
    announced(&store).await;
    let client = flow::Client::new(store.clone());
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let mut charged = 0;
    for _ in 0..2 {
        let mut tx = pool.begin().await.unwrap();
        let receipt = client.send_in(&mut tx, [order(9)]).await.unwrap();
        tx.commit().await.unwrap();
        charged += receipt.runs.len() - 1;
    }
    assert_eq!(charged, 1);
}
