//! `cancel_on`: an event whose field matches the run's own event cancels the run,
//! whatever it is doing (sleeping, waiting for another event, in a step body,
//! which then runs to its end while no step starts after it); other values cancel
//! nothing; an event older than the run does not cancel it, one sent with it or
//! racing its creation does; a function cancelled by its own trigger keeps the
//! newest run.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use flow::prelude::*;
use flow::{CancelOn, Function, ManualClock, NewEvent, RunId, RunStatus};

const WAIT: Duration = Duration::from_secs(60);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/cancel_on.trial_started")]
#[serde(rename_all = "camelCase")]
struct TrialStarted {
    user_id: i64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/cancel_on.subscribed")]
#[serde(rename_all = "camelCase")]
struct Subscribed {
    user_id: i64,
}

static REMINDERS: AtomicU32 = AtomicU32::new(0);

#[step]
async fn remind(_ctx: &Ctx) -> Result<u32, StepError> {
    REMINDERS.fetch_add(1, Ordering::SeqCst);
    Ok(1)
}

/// Reminds a user a week into the trial, unless the user subscribes first.
#[function(
    event = "test/cancel_on.trial_started",
    cancel_on(event = "test/cancel_on.subscribed", match = user_id)
)]
async fn trial(ctx: &Ctx, _event: TrialStarted) -> Result<u32, FlowError> {
    ctx.sleep("a-week", Duration::from_secs(7 * 86_400)).await?;
    Ok(remind(ctx).await?)
}

async fn start(client: &flow::Client, user_id: i64) -> RunId {
    client.send(TrialStarted { user_id }).await.unwrap().runs[0].1
}

#[test]
fn the_field_is_stored_as_serde_names_it() {
    assert_eq!(
        <trial as Function>::DEF.cancel_on,
        [CancelOn {
            event: "test/cancel_on.subscribed",
            field: "userId",
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matching_event_cancels_a_sleeping_run_and_no_other() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<trial>()
            .clock(clock.clone()),
    )
    .await;
    let (subscriber, other) = (start(&client, 1).await, start(&client, 2).await);
    common::eventually(WAIT, "both runs to sleep", || async {
        common::status(&client, subscriber).await == RunStatus::Sleeping
            && common::status(&client, other).await == RunStatus::Sleeping
    })
    .await;
    let watching = {
        let client = client.clone();
        tokio::spawn(async move { client.wait(subscriber, WAIT).await })
    };
    let sent = client.send(Subscribed { user_id: 1 }).await.unwrap();
    assert!(
        sent.unmatched.is_empty(),
        "an event a cancel_on awaits is not unmatched: {:?}",
        sent.unmatched
    );
    let ended = watching.await.unwrap().unwrap();
    assert_eq!(ended.status, RunStatus::Cancelled);
    let reason = ended.error.unwrap();
    assert!(
        reason.contains("test/cancel_on.subscribed")
            && reason.contains(&sent.event_ids[0].0.to_string())
            && reason.contains("userId"),
        "{reason}"
    );
    // The other user's run sleeps on and reminds once its week is over.
    assert_eq!(common::status(&client, other).await, RunStatus::Sleeping);
    clock.advance(Duration::from_secs(7 * 86_400));
    assert_eq!(
        client.wait(other, WAIT).await.unwrap().status,
        RunStatus::Completed
    );
    assert_eq!(REMINDERS.load(Ordering::SeqCst), 1);
    assert_eq!(
        common::status(&client, subscriber).await,
        RunStatus::Cancelled
    );
    // Both runs ended, however they ended: neither leaves a cancel wait behind.
    let left = common::count(
        &store,
        "SELECT count(*) FROM flow.cancel_waits",
        "SELECT count(*) FROM flow_cancel_waits",
    )
    .await;
    assert_eq!(left, 0);
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/cancel_on.order_placed")]
struct OrderPlaced {
    order_id: String,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/cancel_on.order_shipped")]
struct OrderShipped {
    order_id: String,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/cancel_on.order_withdrawn")]
struct OrderWithdrawn {
    order_id: String,
}

/// Waits for the shipment of its order, unless the order is withdrawn.
#[function(
    event = "test/cancel_on.order_placed",
    cancel_on(event = "test/cancel_on.order_withdrawn", match = order_id)
)]
async fn await_shipment(ctx: &Ctx, event: OrderPlaced) -> Result<bool, FlowError> {
    let shipped = ctx
        .wait_for_event::<OrderShipped>("shipment")
        .matching(|f| f.order_id, event.order_id.as_str())
        .timeout(Duration::from_secs(86_400))
        .await?;
    Ok(shipped.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matching_event_cancels_a_run_waiting_for_another_event() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(common::worker(&store).register::<await_shipment>()).await;
    let run = client
        .send(OrderPlaced {
            order_id: "o-1".into(),
        })
        .await
        .unwrap()
        .runs[0]
        .1;
    common::eventually(WAIT, "the run to wait", || async {
        common::status(&client, run).await == RunStatus::Waiting
    })
    .await;
    client
        .send(OrderWithdrawn {
            order_id: "o-1".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        client.wait(run, WAIT).await.unwrap().status,
        RunStatus::Cancelled
    );
    // A shipment after the cancel resolves nothing: the run's wait is closed.
    client
        .send(OrderShipped {
            order_id: "o-1".into(),
        })
        .await
        .unwrap();
    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(view.status, RunStatus::Cancelled);
    assert!(view.steps.is_empty(), "{:?}", view.steps);
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/cancel_on.import")]
struct Import {
    batch: u32,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/cancel_on.import_aborted")]
struct ImportAborted {
    batch: u32,
}

static IMPORT_STARTED: AtomicBool = AtomicBool::new(false);
static IMPORT_MAY_END: AtomicBool = AtomicBool::new(false);
static IMPORT_BODIES_ENDED: AtomicU32 = AtomicU32::new(0);
static SUMMARIES: AtomicU32 = AtomicU32::new(0);

#[step]
async fn import_rows(_ctx: &Ctx) -> Result<u32, StepError> {
    IMPORT_STARTED.store(true, Ordering::SeqCst);
    while !IMPORT_MAY_END.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    IMPORT_BODIES_ENDED.fetch_add(1, Ordering::SeqCst);
    Ok(100)
}

#[step]
async fn summarize(_ctx: &Ctx) -> Result<u32, StepError> {
    SUMMARIES.fetch_add(1, Ordering::SeqCst);
    Ok(1)
}

#[function(
    event = "test/cancel_on.import",
    cancel_on(event = "test/cancel_on.import_aborted", match = batch)
)]
async fn import(ctx: &Ctx, _event: Import) -> Result<u32, FlowError> {
    let rows = import_rows(ctx).await?;
    Ok(rows + summarize(ctx).await?)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/cancel_on.marker")]
struct Marker {}

#[function(event = "test/cancel_on.marker")]
async fn marker(_ctx: &Ctx, _event: Marker) -> Result<u32, FlowError> {
    Ok(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_body_in_flight_runs_to_its_end_and_no_step_starts_after_the_cancel() {
    let (store, _) = common::store().await;
    // One slot: the marker run starts only once the cancelled execution is gone.
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<import>()
            .register::<marker>()
            .concurrency(1),
    )
    .await;
    let client = flow::Client::new(store.clone());
    let run = client.send(Import { batch: 7 }).await.unwrap().runs[0].1;
    common::eventually(WAIT, "the import to start", || async {
        IMPORT_STARTED.load(Ordering::SeqCst)
    })
    .await;
    client.send(ImportAborted { batch: 7 }).await.unwrap();
    assert_eq!(common::status(&client, run).await, RunStatus::Cancelled);
    IMPORT_MAY_END.store(true, Ordering::SeqCst);
    let after = client.send(Marker {}).await.unwrap().runs[0].1;
    assert_eq!(
        client.wait(after, WAIT).await.unwrap().status,
        RunStatus::Completed
    );
    assert_eq!(IMPORT_BODIES_ENDED.load(Ordering::SeqCst), 1);
    assert_eq!(
        SUMMARIES.load(Ordering::SeqCst),
        0,
        "no step after the cancel"
    );
    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(view.status, RunStatus::Cancelled);
    assert!(view.steps.is_empty(), "the body's result was not kept");
}

/// Announces `trial` without running it: these tests look at the runs' rows only.
async fn announced(store: &flow::AnyStore, clock: &ManualClock) {
    common::worker(store)
        .register::<trial>()
        .clock(clock.clone())
        .build()
        .unwrap()
        .announce()
        .await
        .unwrap();
}

fn raw(event: impl Event) -> NewEvent {
    NewEvent::new(&event).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_older_than_the_run_does_not_cancel_it_and_one_sent_with_it_does() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    announced(&store, &clock).await;
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    client.send(Subscribed { user_id: 10 }).await.unwrap();
    clock.advance(Duration::from_secs(60));
    let later = start(&client, 10).await;
    assert_eq!(common::status(&client, later).await, RunStatus::Queued);

    // Sent in one batch, in either order: they have no order the run could
    // tell apart from a race, and the subscription wins.
    for (user_id, first, second) in [
        (
            11,
            raw(TrialStarted { user_id: 11 }),
            raw(Subscribed { user_id: 11 }),
        ),
        (
            12,
            raw(Subscribed { user_id: 12 }),
            raw(TrialStarted { user_id: 12 }),
        ),
    ] {
        let receipt = client.send_batch([first, second]).await.unwrap();
        let run = receipt.runs[0].1;
        let view = client.run(run).await.unwrap().unwrap();
        assert_eq!(view.status, RunStatus::Cancelled, "user {user_id}");
        assert!(view.error.unwrap().contains("cancel_on"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_racing_the_runs_creation_always_cancels_it() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    announced(&store, &clock).await;
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    for user_id in 1_000..1_060 {
        let (started, _) = tokio::join!(
            client.send(TrialStarted { user_id }),
            client.send(Subscribed { user_id }),
        );
        let run = started.unwrap().runs[0].1;
        // Both sends have returned: whichever committed second saw the other.
        assert_eq!(
            common::status(&client, run).await,
            RunStatus::Cancelled,
            "the run of user {user_id} was not cancelled"
        );
    }
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/cancel_on.profile_changed")]
struct ProfileChanged {
    user_id: i64,
    revision: u32,
}

/// Syncs a profile a minute after its last change: a newer change of the same
/// profile cancels the older run, never its own.
#[function(
    event = "test/cancel_on.profile_changed",
    cancel_on(event = "test/cancel_on.profile_changed", match = user_id)
)]
async fn sync_profile(ctx: &Ctx, event: ProfileChanged) -> Result<u32, FlowError> {
    ctx.sleep("settle", Duration::from_secs(60)).await?;
    Ok(event.revision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_cancelled_by_its_own_trigger_keeps_the_newest_run() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<sync_profile>()
            .clock(clock.clone()),
    )
    .await;
    let mut runs = Vec::new();
    for revision in 1..=3 {
        let changed = ProfileChanged {
            user_id: 5,
            revision,
        };
        runs.push(client.send(changed).await.unwrap().runs[0].1);
        clock.advance(Duration::from_secs(5));
    }
    for &old in &runs[..2] {
        assert_eq!(common::status(&client, old).await, RunStatus::Cancelled);
    }
    common::eventually(WAIT, "the newest run to sleep", || async {
        common::status(&client, runs[2]).await == RunStatus::Sleeping
    })
    .await;
    clock.advance(Duration::from_secs(60));
    let revision: u32 = client.result(runs[2], WAIT).await.unwrap();
    assert_eq!(revision, 3);
}
