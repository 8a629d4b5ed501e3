//! Versions of the function catalog: while two versions of a function are served
//! at once (a rolling deploy), the send-time rules follow the version first seen
//! last, whichever worker announced last; once no worker serves the newer one
//! (a rollback), the older one's rules return. Workers keep the versions they
//! serve marked as seen.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use flow::catalog::{SendRules, VERSION_HEARTBEAT, VERSION_LIVENESS};
use flow::prelude::*;
use flow::store::{FunctionInfo, Store};
use flow::{Clock, NewEvent, Now};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn version(key: &str) -> FunctionInfo {
    let mut info = FunctionInfo::new("deployed", "test/catalog.order");
    info.send_rules = SendRules {
        idempotency: Some(key.to_owned()),
        ..SendRules::default()
    };
    info
}

fn start() -> DateTime<Utc> {
    "2026-03-01T09:00:00Z".parse().unwrap()
}

fn at(seconds: u64) -> Now {
    Now::At(start() + Duration::from_secs(seconds))
}

/// Which field the send-time key reads now (`a` or `b`), told by sending two
/// events that share only that field: the second starts no run.
async fn keyed_by(client: &flow::Client, fresh: &mut u64) -> &'static str {
    *fresh += 1;
    let (n, other) = (*fresh, *fresh + 1_000_000);
    let send = |data| async {
        let event = NewEvent::raw("test/catalog.order", data).unwrap();
        client.send(event).await.unwrap().runs.len()
    };
    assert_eq!(send(json!({"a": n, "b": n})).await, 1);
    let same_a = send(json!({"a": n, "b": other})).await;
    let same_b = send(json!({"a": other, "b": n})).await;
    match (same_a, same_b) {
        (0, 1) => "a",
        (1, 0) => "b",
        other => panic!("keyed by neither field alone: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deploy_does_not_flip_the_rules_and_a_rollback_restores_them() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let fresh = &mut 0;
    let (old, new) = ([version("event.data.a")], [version("event.data.b")]);

    store.register_functions(&old, at(0)).await.unwrap();
    assert_eq!(keyed_by(&client, fresh).await, "a");
    // The deploy starts: a worker of the new version announces.
    store.register_functions(&new, at(10)).await.unwrap();
    assert_eq!(keyed_by(&client, fresh).await, "b");
    // A worker of the old version restarts meanwhile: the new rules stay.
    store.register_functions(&old, at(20)).await.unwrap();
    assert_eq!(keyed_by(&client, fresh).await, "b");
    // Both keep beating.
    let beat = 20 + VERSION_HEARTBEAT.as_secs();
    store.keep_announced(&old, at(beat)).await.unwrap();
    store.keep_announced(&new, at(beat)).await.unwrap();
    assert_eq!(keyed_by(&client, fresh).await, "b");
    // A rollback: the new version's workers are gone; once their last beat is
    // VERSION_LIVENESS old, the old version's next beat brings its rules back.
    let gone = beat + VERSION_LIVENESS.as_secs();
    store.keep_announced(&old, at(gone - 1)).await.unwrap();
    assert_eq!(
        keyed_by(&client, fresh).await,
        "b",
        "not yet past the liveness"
    );
    store.keep_announced(&old, at(gone)).await.unwrap();
    assert_eq!(keyed_by(&client, fresh).await, "a");
    // Deploying the new version again makes it current again.
    store.register_functions(&new, at(gone + 2)).await.unwrap();
    assert_eq!(keyed_by(&client, fresh).await, "b");
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/catalog.order")]
struct Order {
    a: u64,
    b: u64,
}

/// The new version, served by a real worker.
#[function(
    id = "deployed",
    event = "test/catalog.order",
    idempotency = "event.data.b"
)]
async fn deployed(_ctx: &Ctx, _order: Order) -> Result<(), FlowError> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_keeps_its_version_marked_as_served() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let fresh = &mut 0;
    let clock = common::clock();
    assert_eq!(clock.now(), start());
    store
        .register_functions(&[version("event.data.a")], at(0))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(10));
    let worker = common::spawn_worker(
        common::worker(&store)
            .clock(clock.clone())
            .register::<deployed>(),
    )
    .await;
    assert_eq!(keyed_by(&client, fresh).await, "b");
    // Long past the liveness of its announcement: only its beats keep it served.
    clock.advance(VERSION_LIVENESS * 2);
    let since = start() + Duration::from_secs(10) + VERSION_LIVENESS;
    let (postgres, sqlite) = (
        format!(
            "SELECT count(*) FROM flow.function_versions
             WHERE function_id = 'deployed' AND last_seen > '{}'",
            since.to_rfc3339()
        ),
        format!(
            "SELECT count(*) FROM flow_function_versions
             WHERE function_id = 'deployed' AND last_seen > {}",
            since.timestamp_micros()
        ),
    );
    common::eventually(WAIT, "the worker marks its version as seen", || async {
        common::count(&store, &postgres, &sqlite).await == 1
    })
    .await;
    // Workers of the old version are still up, and one restarts now: it does
    // not take the rules back from the version the worker keeps served.
    let now = Now::At(clock.now());
    store
        .keep_announced(&[version("event.data.a")], now)
        .await
        .unwrap();
    store
        .register_functions(&[version("event.data.a")], now)
        .await
        .unwrap();
    assert_eq!(keyed_by(&client, fresh).await, "b");
    worker.stop().await.unwrap();
}
