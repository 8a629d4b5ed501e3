//! `timeouts(start, finish)` with real workers: a run that no worker starts in
//! time is cancelled by any worker, at its deadline, with a reason naming the
//! start timeout; a run that started in time is held to its finish timeout only;
//! a run that does not finish in time is cancelled while it sleeps, and never
//! resumes.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flow::prelude::*;
use flow::{Function, RunId, RunStatus, Timeouts};

const WAIT: Duration = Duration::from_secs(60);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/timeouts.report")]
struct ReportRequested {
    days: u64,
}

static REPORTS: AtomicU32 = AtomicU32::new(0);

#[step]
async fn write_report(_ctx: &Ctx) -> Result<u32, StepError> {
    REPORTS.fetch_add(1, Ordering::SeqCst);
    Ok(1)
}

/// A report that must start within ten minutes, and be written within a day of
/// its start: it waits `days` first.
#[function(event = "test/timeouts.report", timeouts(start = "10m", finish = "1d"))]
async fn report(ctx: &Ctx, event: ReportRequested) -> Result<u32, FlowError> {
    ctx.sleep("gather", Duration::from_secs(event.days * 86_400))
        .await?;
    Ok(write_report(ctx).await?)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/timeouts.other")]
struct Other {}

#[function(event = "test/timeouts.other")]
async fn other(_ctx: &Ctx, _event: Other) -> Result<u32, FlowError> {
    Ok(0)
}

async fn request(client: &flow::Client, days: u64) -> RunId {
    client.send(ReportRequested { days }).await.unwrap().runs[0].1
}

#[test]
fn the_macro_stores_both_timeouts() {
    assert_eq!(
        <report as Function>::DEF.timeouts,
        Timeouts {
            start: Some(Duration::from_secs(600)),
            finish: Some(Duration::from_secs(86_400)),
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_no_worker_starts_in_time_is_cancelled_by_any_worker_at_its_deadline() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    // `report` is announced, but the only worker up serves another function.
    common::worker(&store)
        .register::<report>()
        .clock(clock.clone())
        .build()
        .unwrap()
        .announce()
        .await
        .unwrap();
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<other>()
            .clock(clock.clone()),
    )
    .await;
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let run = request(&client, 0).await;
    let watching = {
        let client = client.clone();
        tokio::spawn(async move { client.wait(run, WAIT).await })
    };
    clock.advance(Duration::from_secs(600));
    let ended = watching.await.unwrap().unwrap();
    assert_eq!(ended.status, RunStatus::Cancelled);
    assert_eq!(
        ended.error.as_deref(),
        Some("did not start within 10m of its creation (timeouts: start)")
    );
    assert!(ended.steps.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_started_in_time_is_held_to_its_finish_timeout_only() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<report>()
            .clock(clock.clone()),
    )
    .await;
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let (quick, slow) = (request(&client, 0).await, request(&client, 2).await);
    assert_eq!(
        client.wait(quick, WAIT).await.unwrap().status,
        RunStatus::Completed
    );
    common::eventually(WAIT, "the slow report to sleep", || async {
        common::status(&client, slow).await == RunStatus::Sleeping
    })
    .await;
    // Past the start timeout: the slow run started in time, and sleeps on.
    clock.advance(Duration::from_secs(3_600));
    let watching = {
        let client = client.clone();
        tokio::spawn(async move { client.wait(slow, WAIT).await })
    };
    // A day after its start, while it sleeps: cancelled, and it never resumes.
    clock.advance(Duration::from_secs(86_400 - 3_600));
    let ended = watching.await.unwrap().unwrap();
    assert_eq!(ended.status, RunStatus::Cancelled);
    assert_eq!(
        ended.error.as_deref(),
        Some("did not finish within 1d of its start (timeouts: finish)")
    );
    clock.advance(Duration::from_secs(2 * 86_400));
    let marker = client.send(ReportRequested { days: 0 }).await.unwrap().runs[0].1;
    assert_eq!(
        client.wait(marker, WAIT).await.unwrap().status,
        RunStatus::Completed
    );
    assert_eq!(common::status(&client, slow).await, RunStatus::Cancelled);
    assert_eq!(
        REPORTS.load(Ordering::SeqCst),
        2,
        "the quick run and the marker"
    );
}
