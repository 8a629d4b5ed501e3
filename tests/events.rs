//! Sending events: fan-out, producer-id dedupe, sending inside the caller's
//! transaction, wake-ups of an idle worker, and the send limits.

mod common;

use std::time::Duration;

use flow::prelude::*;
use flow::{Limits, NewEvent, RunStatus, SendInTransaction};

const WAIT: Duration = Duration::from_secs(30);

#[derive(Event, Serialize, Deserialize, Clone)]
#[event(name = "test/invoice.paid")]
struct InvoicePaid {
    invoice: i64,
}

#[function(event = "test/invoice.paid")]
async fn email_receipt(_ctx: &Ctx, event: InvoicePaid) -> Result<String, FlowError> {
    Ok(format!("receipt {}", event.invoice))
}

#[function(event = "test/invoice.paid", id = "update-ledger")]
async fn update_ledger(_ctx: &Ctx, event: InvoicePaid) -> Result<i64, FlowError> {
    Ok(event.invoice)
}

fn builder(store: &flow::AnyStore) -> flow::WorkerBuilder<flow::AnyStore> {
    common::worker(store)
        .register::<email_receipt>()
        .register::<update_ledger>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_starts_every_function_it_triggers() {
    let (store, _) = common::store().await;
    let _worker = common::spawn_worker(builder(&store)).await;
    let client = flow::Client::new(store);
    let receipt = client.send(InvoicePaid { invoice: 5 }).await.unwrap();
    assert_eq!(receipt.runs.len(), 2);
    let mut functions = Vec::new();
    for (event, run) in &receipt.runs {
        assert_eq!(*event, receipt.event_ids[0]);
        let view = client.wait(*run, WAIT).await.unwrap();
        assert_eq!(view.status, RunStatus::Completed);
        functions.push(view.function_id);
    }
    functions.sort();
    assert_eq!(functions, ["email_receipt", "update-ledger"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_id_deduplicates_within_a_batch_and_across_sends() {
    let (store, _) = common::store().await;
    let _worker = common::spawn_worker(builder(&store)).await;
    let client = flow::Client::new(store);
    let event = |n| {
        NewEvent::new(&InvoicePaid { invoice: n })
            .unwrap()
            .id("invoice-5-paid")
    };

    let first = client.send_batch([event(5), event(5)]).await.unwrap();
    assert_eq!(
        first.runs.len(),
        2,
        "the first event fans out; its twin starts nothing"
    );
    assert_eq!(first.duplicates, 1);
    assert_eq!(first.event_ids[0], first.event_ids[1]);

    let again = client.send(event(5)).await.unwrap();
    assert!(again.runs.is_empty());
    assert_eq!(again.duplicates, 1);
    assert_eq!(
        again.event_ids,
        vec![first.event_ids[0]],
        "the duplicate reports the original event"
    );

    let other = client
        .send(
            NewEvent::new(&InvoicePaid { invoice: 6 })
                .unwrap()
                .id("invoice-6-paid"),
        )
        .await
        .unwrap();
    assert_eq!(other.runs.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_id_is_accepted_again_after_24_hours() {
    let (store, _) = common::store().await;
    let clock = flow::ManualClock::new("2026-05-01T00:00:00Z".parse().unwrap());
    common::worker(&store)
        .register::<email_receipt>()
        .build()
        .unwrap()
        .announce()
        .await
        .unwrap();
    let client = flow::Client::new(store).with_clock(clock.clone());
    let event = || {
        NewEvent::new(&InvoicePaid { invoice: 1 })
            .unwrap()
            .id("daily-1")
    };
    assert_eq!(client.send(event()).await.unwrap().runs.len(), 1);
    clock.advance(Duration::from_secs(86_400 - 1));
    assert_eq!(client.send(event()).await.unwrap().duplicates, 1);
    clock.advance(Duration::from_secs(1));
    assert_eq!(client.send(event()).await.unwrap().runs.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_in_the_callers_transaction_commit_or_roll_back_with_it() {
    // A PostgreSQL feature: the caller's sqlx transaction.
    let (store, url) = common::pg_store().await;
    let _worker = common::spawn_worker(builder(&store)).await;
    let client = flow::Client::new(store);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE invoices (id bigint PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO invoices VALUES (1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let rolled_back = client
        .send_in(&mut tx, [InvoicePaid { invoice: 1 }])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(rolled_back.runs.len(), 2);
    for (_, run) in &rolled_back.runs {
        assert!(
            client.run(*run).await.unwrap().is_none(),
            "rolled back with the caller's write"
        );
    }

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO invoices VALUES (2)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let committed = client
        .send_in(&mut tx, [InvoicePaid { invoice: 2 }])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    for (_, run) in &committed.runs {
        // The worker was woken by the NOTIFY delivered at commit (its poll is an hour).
        assert_eq!(
            client.wait(*run, WAIT).await.unwrap().status,
            RunStatus::Completed
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_is_woken_by_a_notification_not_by_its_poll() {
    let (store, _) = common::store().await;
    let _worker =
        common::spawn_worker(builder(&store).poll_interval(Duration::from_secs(3600))).await;
    let client = flow::Client::new(store);
    // Let the worker go idle: it has read that nothing is due and sleeps for an hour.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let receipt = client.send(InvoicePaid { invoice: 3 }).await.unwrap();
    for (_, run) in receipt.runs {
        assert_eq!(
            client.wait(run, WAIT).await.unwrap().status,
            RunStatus::Completed
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_over_the_limits_are_refused_whole_with_the_limit_named() {
    let (store, _) = common::store().await;
    common::worker(&store)
        .register::<email_receipt>()
        .build()
        .unwrap()
        .announce()
        .await
        .unwrap();
    let client = flow::Client::new(store).with_limits(Limits {
        event_bytes: 100,
        events_per_send: 3,
        ..Limits::DEFAULT
    });

    let big = NewEvent::raw(
        "test/invoice.paid",
        serde_json::json!({"invoice": 1, "note": "x".repeat(200)}),
    )
    .unwrap();
    let err = client.send(big).await.unwrap_err().to_string();
    assert!(
        err.contains("test/invoice.paid") && err.contains("limit of 100 bytes"),
        "{err}"
    );
    assert!(err.contains("Limits::event_bytes"), "{err}");

    let err = client
        .send_batch((0..4).map(|n| InvoicePaid { invoice: n }))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("4 is over the limit of 3") && err.contains("Limits::events_per_send"),
        "{err}"
    );

    let err = client
        .send(NewEvent::new(&InvoicePaid { invoice: 1 }).unwrap().id(""))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("producer id"), "{err}");

    // Nothing of a refused send was stored.
    let ok = client
        .send_batch((0..3).map(|n| InvoicePaid { invoice: n }))
        .await
        .unwrap();
    assert_eq!(ok.runs.len(), 3);
}

#[test]
fn default_limits_are_inngests() {
    let l = Limits::DEFAULT;
    assert_eq!(
        (
            l.event_bytes,
            l.step_output_bytes,
            l.run_state_bytes,
            l.steps_per_run,
            l.events_per_send
        ),
        (512 * 1024, 4 * 1024 * 1024, 32 * 1024 * 1024, 1000, 5000)
    );
}
