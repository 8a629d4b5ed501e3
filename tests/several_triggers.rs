//! A function with several triggers (`event` given twice, and two `cron`
//! schedules) starts a run for each of its events and for each tick, and its
//! handler receives the `#[derive(Triggers)]` variant of the one that started it.
//! A send of one of them starts no other function's run, and a function with one
//! of them among others is matched as it is alone.

mod common;

use std::time::Duration;

use flow::prelude::*;
use flow::{NewEvent, RunId};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/triggers.account_created")]
struct AccountCreated {
    id: u32,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/triggers.account_deleted")]
struct AccountDeleted {
    id: u32,
}

#[derive(Triggers)]
enum AccountChange {
    Created(AccountCreated),
    Deleted(AccountDeleted),
    Sweep(CronTick),
}

/// Synced when an account is created or deleted, and swept twice a day (at
/// midday and at midnight, UTC).
#[function(
    event = "test/triggers.account_created",
    event = "test/triggers.account_deleted",
    cron = "0 12 * * *",
    cron = "0 0 * * *"
)]
async fn sync_accounts(_ctx: &Ctx, change: AccountChange) -> Result<String, FlowError> {
    Ok(match change {
        AccountChange::Created(a) => format!("created {}", a.id),
        AccountChange::Deleted(a) => format!("deleted {}", a.id),
        AccountChange::Sweep(tick) => format!("sweep {}", tick.schedule),
    })
}

/// One type for the data of two events: a function triggered by both takes it.
#[derive(Event, Serialize, Deserialize)]
#[event(
    name = "test/triggers.plan_upgraded",
    name = "test/triggers.plan_downgraded"
)]
struct PlanChanged {
    plan: String,
}

#[function(
    event = "test/triggers.plan_upgraded",
    event = "test/triggers.plan_downgraded"
)]
async fn bill_plan(_ctx: &Ctx, change: PlanChanged) -> Result<String, FlowError> {
    Ok(change.plan)
}

/// Triggered by the type's second name alone.
#[function(event = "test/triggers.plan_downgraded")]
async fn note_downgrade(_ctx: &Ctx, change: PlanChanged) -> Result<String, FlowError> {
    Ok(format!("down to {}", change.plan))
}

/// The deletions alone, as any one-trigger function.
#[function(event = "test/triggers.account_deleted")]
async fn audit_deletion(_ctx: &Ctx, event: AccountDeleted) -> Result<u32, FlowError> {
    Ok(event.id)
}

fn builder(
    store: &flow::AnyStore,
    clock: &flow::ManualClock,
) -> flow::WorkerBuilder<flow::AnyStore> {
    common::worker(store)
        .clock(clock.clone())
        .lease(Duration::from_secs(3 * 86_400))
        .register::<sync_accounts>()
        .register::<audit_deletion>()
        .register::<bill_plan>()
        .register::<note_downgrade>()
}

async fn output_of(client: &flow::Client, run: RunId) -> serde_json::Value {
    let view = client.wait(run, WAIT).await.unwrap();
    assert_eq!(view.status, flow::RunStatus::Completed, "{:?}", view.error);
    view.output.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_trigger_starts_a_run_with_its_variant() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let _worker = common::spawn_worker(builder(&store, &clock)).await;
    let def = <sync_accounts as flow::Function>::DEF;
    assert_eq!(
        def.triggers(),
        [
            "test/triggers.account_created",
            "test/triggers.account_deleted",
            "flow/cron.sync_accounts"
        ]
    );
    // The functions as announced, with all their triggers.
    let functions = client.functions().await.unwrap();
    let sync = functions.iter().find(|f| f.id == "sync_accounts").unwrap();
    assert_eq!(
        sync.triggers,
        [
            "test/triggers.account_created",
            "flow/cron.sync_accounts",
            "test/triggers.account_deleted"
        ]
    );
    assert_eq!(sync.send_rules, None);
    let created = client
        .send(NewEvent::raw("test/triggers.account_created", json!({ "id": 1 })).unwrap())
        .await
        .unwrap();
    assert_eq!(created.runs.len(), 1, "{created:?}");
    assert_eq!(output_of(&client, created.runs[0].1).await, "created 1");
    // A deletion starts a run of each function it triggers.
    let deleted = client
        .send(NewEvent::raw("test/triggers.account_deleted", json!({ "id": 2 })).unwrap())
        .await
        .unwrap();
    assert_eq!(deleted.runs.len(), 2, "{deleted:?}");
    let mut outputs = Vec::new();
    for (_, run) in &deleted.runs {
        outputs.push(output_of(&client, *run).await);
    }
    outputs.sort_by_key(|o| o.to_string());
    assert_eq!(outputs, [json!("deleted 2"), json!(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cron_schedule_starts_a_run_with_its_tick() {
    let (store, _) = common::store().await;
    let clock = common::clock(); // 2026-03-01T09:00:00Z
    let _worker = common::spawn_worker(builder(&store, &clock)).await;
    let sweeps = |schedule: &'static str| {
        let postgres = format!(
            "SELECT count(*) FROM flow.runs WHERE function_id = 'sync_accounts'
               AND status = 'completed' AND output = '\"sweep {schedule}\"'"
        );
        let sqlite = format!(
            "SELECT count(*) FROM flow_runs WHERE function_id = 'sync_accounts'
               AND status = 'completed' AND output = '\"sweep {schedule}\"'"
        );
        let store = store.clone();
        async move { common::count(&store, &postgres, &sqlite).await }
    };
    // Midday: the first schedule's tick.
    clock.advance(Duration::from_secs(3 * 3600));
    common::eventually(WAIT, "the midday sweep", || async {
        sweeps("0 12 * * *").await == 1
    })
    .await;
    // Midnight: the second's.
    clock.advance(Duration::from_secs(12 * 3600));
    common::eventually(WAIT, "the midnight sweep", || async {
        sweeps("0 0 * * *").await == 1
    })
    .await;
    assert_eq!(sweeps("0 12 * * *").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_shared_by_two_events_is_taken_by_a_function_of_both() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let _worker = common::spawn_worker(builder(&store, &clock)).await;
    let up = client
        .send(NewEvent::raw("test/triggers.plan_upgraded", json!({ "plan": "pro" })).unwrap())
        .await
        .unwrap();
    assert_eq!(up.runs.len(), 1, "{up:?}");
    assert_eq!(output_of(&client, up.runs[0].1).await, "pro");
    let down = client
        .send(NewEvent::raw("test/triggers.plan_downgraded", json!({ "plan": "free" })).unwrap())
        .await
        .unwrap();
    assert_eq!(down.runs.len(), 2, "{down:?}");
    let mut outputs = Vec::new();
    for (_, run) in &down.runs {
        outputs.push(output_of(&client, *run).await);
    }
    outputs.sort_by_key(|o| o.to_string());
    assert_eq!(outputs, [json!("down to free"), json!("free")]);
}
