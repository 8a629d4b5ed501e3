//! Cancelling a run from the client: a sleeping run ends at once and never wakes;
//! a running one finishes the step body it is in, its result is not kept, and no
//! step starts after the cancel; an ended or unknown run is refused by name, and
//! so is a bulk cancel over an empty time range.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use flow::prelude::*;
use flow::{Error, RunId, RunStatus};

const WAIT: Duration = Duration::from_secs(30);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/cancel.charge")]
struct Charge {}

static CHARGE_STARTED: AtomicBool = AtomicBool::new(false);
static CHARGE_MAY_END: AtomicBool = AtomicBool::new(false);
static RECEIPTS: AtomicU32 = AtomicU32::new(0);

#[step]
async fn charge_card(_ctx: &Ctx) -> Result<u32, StepError> {
    CHARGE_STARTED.store(true, Ordering::SeqCst);
    while !CHARGE_MAY_END.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(1)
}

#[step]
async fn send_receipt(_ctx: &Ctx) -> Result<u32, StepError> {
    RECEIPTS.fetch_add(1, Ordering::SeqCst);
    Ok(2)
}

#[function(event = "test/cancel.charge")]
async fn charge(ctx: &Ctx, _event: Charge) -> Result<u32, FlowError> {
    let charged = charge_card(ctx).await?;
    Ok(charged + send_receipt(ctx).await?)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/cancel.marker")]
struct Marker {}

#[function(event = "test/cancel.marker")]
async fn marker(_ctx: &Ctx, _event: Marker) -> Result<u32, FlowError> {
    Ok(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_run_finishes_its_step_body_and_starts_no_other() {
    let (store, _) = common::store().await;
    // One slot: the marker run starts only once the cancelled execution is gone.
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<charge>()
            .register::<marker>()
            .concurrency(1),
    )
    .await;
    let client = flow::Client::new(store.clone());
    let run = client.send(Charge {}).await.unwrap().runs[0].1;
    common::eventually(WAIT, "the charge to start", || async {
        CHARGE_STARTED.load(Ordering::SeqCst)
    })
    .await;
    let view = client.cancel(run, "the order was withdrawn").await.unwrap();
    assert_eq!(view.status, RunStatus::Cancelled);
    assert_eq!(
        view.error.as_deref(),
        Some("cancelled: the order was withdrawn")
    );
    CHARGE_MAY_END.store(true, Ordering::SeqCst);
    let after = client.send(Marker {}).await.unwrap().runs[0].1;
    assert_eq!(
        client.wait(after, WAIT).await.unwrap().status,
        RunStatus::Completed
    );
    assert_eq!(
        RECEIPTS.load(Ordering::SeqCst),
        0,
        "no step started after the cancel"
    );
    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(view.status, RunStatus::Cancelled);
    assert!(view.steps.is_empty(), "the body's result was not kept");
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/cancel.trial")]
struct Trial {}

static TRIAL_REMINDERS: AtomicU32 = AtomicU32::new(0);

#[step]
async fn remind(_ctx: &Ctx) -> Result<u32, StepError> {
    TRIAL_REMINDERS.fetch_add(1, Ordering::SeqCst);
    Ok(1)
}

#[function(event = "test/cancel.trial")]
async fn trial(ctx: &Ctx, _event: Trial) -> Result<u32, FlowError> {
    ctx.sleep("a-week", Duration::from_secs(7 * 86_400)).await?;
    Ok(remind(ctx).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_run_ends_at_once_and_ended_or_unknown_runs_are_refused() {
    let (store, _) = common::store().await;
    let _worker = common::spawn_worker(common::worker(&store).register::<trial>()).await;
    let client = flow::Client::new(store.clone());
    let run = client.send(Trial {}).await.unwrap().runs[0].1;
    common::eventually(WAIT, "the run to sleep", || async {
        client.run(run).await.unwrap().unwrap().status == RunStatus::Sleeping
    })
    .await;
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.wait(run, WAIT).await })
    };
    client.cancel(run, "the user subscribed").await.unwrap();
    let ended = waiting.await.unwrap().unwrap();
    assert_eq!(ended.status, RunStatus::Cancelled);
    assert_eq!(TRIAL_REMINDERS.load(Ordering::SeqCst), 0);
    match client.cancel(run, "again").await {
        Err(Error::AlreadyEnded { run: r, status }) => {
            assert_eq!((r, status), (run, RunStatus::Cancelled));
        }
        other => panic!("expected AlreadyEnded, got {other:?}"),
    }
    let now = chrono::Utc::now();
    match client.cancel_runs("trial", now..now, "nothing").await {
        Err(Error::Config(message)) => assert!(message.contains("before its end"), "{message}"),
        other => panic!("expected a refused empty range, got {other:?}"),
    }
    let unknown = RunId(uuid::Uuid::now_v7());
    match client.cancel(unknown, "nothing").await {
        Err(Error::RunNotFound(r)) => assert_eq!(r, unknown),
        other => panic!("expected RunNotFound, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reason_the_database_cannot_store_is_stored_cleaned() {
    let (store, _) = common::store().await;
    common::worker(&store)
        .register::<trial>()
        .build()
        .unwrap()
        .announce()
        .await
        .unwrap();
    let client = flow::Client::new(store.clone());
    let run = client.send(Trial {}).await.unwrap().runs[0].1;
    let view = client.cancel(run, "pasted\0from a terminal").await.unwrap();
    assert_eq!(view.status, RunStatus::Cancelled);
    assert_eq!(
        view.error.as_deref(),
        Some("cancelled: pasted\u{FFFD}from a terminal")
    );
}
