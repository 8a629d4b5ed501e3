//! Runs whose code no longer replays their record are held as `blocked`, not
//! failed: a changed step order, a recorded output that no longer deserializes, a
//! record with rows missing. Code that replays them resumes them with nothing lost
//! and no completed step run again; an operator can also fail or cancel them.

mod common;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use flow::prelude::*;
use flow::store::Settle;
use flow::{AnyStore, FailureKind, RunId, RunStatus, RunView};

const WAIT: Duration = Duration::from_secs(30);

async fn blocked(client: &flow::Client, run: RunId) -> RunView {
    common::eventually(WAIT, "the run to be blocked", || async {
        client.run(run).await.unwrap().unwrap().status == RunStatus::Blocked
    })
    .await;
    client.run(run).await.unwrap().unwrap()
}

// ---------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/reorder")]
struct Reorder {}

/// The code of `reorder` as deployed: the changed version calls `audit` first.
static CHANGED_CODE: AtomicBool = AtomicBool::new(false);
static NOTIFY_RUNS: AtomicU32 = AtomicU32::new(0);
static AUDIT_RUNS: AtomicU32 = AtomicU32::new(0);
static RESERVE_TRIES: AtomicU32 = AtomicU32::new(0);

#[step]
async fn notify_team(_ctx: &Ctx) -> Result<(), StepError> {
    NOTIFY_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[step]
async fn audit(_ctx: &Ctx) -> Result<(), StepError> {
    AUDIT_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// Fails its first attempt, and the changed code is deployed while it backs off.
#[step(backoff(initial = "1ms", max = "2ms"))]
async fn reserve(_ctx: &Ctx) -> Result<(), StepError> {
    if RESERVE_TRIES.fetch_add(1, Ordering::SeqCst) == 0 {
        CHANGED_CODE.store(true, Ordering::SeqCst);
        return Err(StepError::retriable("busy"));
    }
    Ok(())
}

#[function(event = "test/reorder")]
async fn reorder(ctx: &Ctx, _event: Reorder) -> Result<(), FlowError> {
    if CHANGED_CODE.load(Ordering::SeqCst) {
        audit(ctx).await?;
    } else {
        notify_team(ctx).await?;
    }
    reserve(ctx).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_in_another_order_is_blocked_and_resumes_once_the_deploy_is_rolled_back() {
    let (store, _) = common::store().await;
    let _first = common::spawn_worker(common::worker(&store).register::<reorder>()).await;
    let client = flow::Client::new(store.clone());
    let run = client.send(Reorder {}).await.unwrap().runs[0].1;

    let view = blocked(&client, run).await;
    let error = view.error.clone().unwrap();
    assert!(error.contains("non-determinism"), "{error}");
    assert!(
        error.contains("step `audit` at position 0") && error.contains("step `notify_team` there"),
        "the message names both steps, their kinds and the position: {error}"
    );
    assert_eq!(view.failure_kind, Some(FailureKind::Replay));
    assert_eq!(view.failure_step.as_deref(), Some("audit"));
    assert_eq!(view.finished_at, None, "a blocked run has not ended");
    assert_eq!(AUDIT_RUNS.load(Ordering::SeqCst), 0, "no new step ran");

    // The deploy is rolled back: a worker with the old code starts and announces
    // the function, which makes its blocked runs due at once (the blocked run's
    // own retry is a minute away).
    CHANGED_CODE.store(false, Ordering::SeqCst);
    let _rolled_back = common::spawn_worker(common::worker(&store).register::<reorder>()).await;
    client.result::<()>(run, WAIT).await.unwrap();
    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(view.error, None, "{:?}", view.error);
    let keys: Vec<&str> = view.steps.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, ["notify_team", "reserve"]);
    assert_eq!(
        NOTIFY_RUNS.load(Ordering::SeqCst),
        1,
        "the recorded step was not run again"
    );
    assert_eq!(RESERVE_TRIES.load(Ordering::SeqCst), 2);
    assert_eq!(AUDIT_RUNS.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/quote")]
struct Quote {}

/// The output type of `quote` in the new code: `amount` became a string.
#[derive(Serialize, Deserialize)]
struct Price {
    amount: String,
}

static PRICE_IS_TEXT: AtomicBool = AtomicBool::new(false);
static CHARGE_TRIES: AtomicU32 = AtomicU32::new(0);

#[step(backoff(initial = "1ms", max = "2ms"))]
async fn charge(_ctx: &Ctx) -> Result<(), StepError> {
    if CHARGE_TRIES.fetch_add(1, Ordering::SeqCst) == 0 {
        PRICE_IS_TEXT.store(true, Ordering::SeqCst);
        return Err(StepError::retriable("card declined, try again"));
    }
    Ok(())
}

#[function(event = "test/quote")]
async fn quote(ctx: &Ctx, _event: Quote) -> Result<(), FlowError> {
    if PRICE_IS_TEXT.load(Ordering::SeqCst) {
        let _: Price = ctx
            .run("quote", || async {
                Ok::<_, StepError>(Price { amount: "5".into() })
            })
            .await?;
    } else {
        let _: serde_json::Value = ctx
            .run("quote", || async {
                Ok::<_, StepError>(serde_json::json!({ "amount": 5 }))
            })
            .await?;
    }
    charge(ctx).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_output_of_another_type_blocks_the_run_until_an_operator_fails_it() {
    let (store, _) = common::store().await;
    let _worker = common::spawn_worker(common::worker(&store).register::<quote>()).await;
    let client = flow::Client::new(store.clone());
    let run = client.send(Quote {}).await.unwrap().runs[0].1;

    let view = blocked(&client, run).await;
    let error = view.error.clone().unwrap();
    assert!(
        error.contains("step `quote`") && error.contains("Price") && error.contains("at `amount`"),
        "the message names the step, the type and the path: {error}"
    );
    assert_eq!(view.failure_step.as_deref(), Some("quote"));

    let settled = client
        .settle_blocked(
            run,
            Settle::Fail("the price format changed; refunded".into()),
        )
        .await
        .unwrap();
    assert_eq!(settled.status, RunStatus::Failed);
    assert_eq!(settled.failure_kind, Some(FailureKind::Replay));
    let error = settled.error.unwrap();
    assert!(
        error.contains("refunded") && error.contains("blocked by: ") && error.contains("Price"),
        "the reason is kept beside the error it was blocked with: {error}"
    );
    assert!(settled.finished_at.is_some());

    // Only a blocked run can be settled.
    match client
        .settle_blocked(run, Settle::Cancel("again".into()))
        .await
    {
        Err(flow::Error::NotBlocked { status, .. }) => assert_eq!(status, RunStatus::Failed),
        other => panic!("expected NotBlocked, got {other:?}"),
    }
    let nobody = RunId(uuid::Uuid::new_v4());
    assert!(matches!(
        client
            .settle_blocked(nobody, Settle::Cancel("none".into()))
            .await,
        Err(flow::Error::RunNotFound(id)) if id == nobody
    ));
}

// ---------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/ledger")]
struct Ledger {}

static STORE: OnceLock<AnyStore> = OnceLock::new();
static DEBIT_RUNS: AtomicU32 = AtomicU32::new(0);
static CREDIT_RUNS: AtomicU32 = AtomicU32::new(0);
static SETTLE_TRIES: AtomicU32 = AtomicU32::new(0);

#[step]
async fn debit(_ctx: &Ctx) -> Result<(), StepError> {
    DEBIT_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[step]
async fn credit(_ctx: &Ctx) -> Result<(), StepError> {
    CREDIT_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// Its first attempt loses the `credit` row and fails, so the run replays.
#[step(backoff(initial = "1ms", max = "2ms"))]
async fn settle_books(ctx: &Ctx) -> Result<(), StepError> {
    if SETTLE_TRIES.fetch_add(1, Ordering::SeqCst) == 0 {
        // Lost behind the engine's back, as a bad restore would lose it.
        common::execute_for_run(
            STORE.get().unwrap(),
            ctx.run_id(),
            "DELETE FROM flow.steps WHERE run_id = $1 AND key = 'credit'",
            "DELETE FROM flow_steps WHERE run_id = ? AND key = 'credit'",
        )
        .await;
        return Err(StepError::retriable("books locked"));
    }
    Ok(())
}

#[function(event = "test/ledger")]
async fn ledger(ctx: &Ctx, _event: Ledger) -> Result<(), FlowError> {
    debit(ctx).await?;
    credit(ctx).await?;
    settle_books(ctx).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_step_row_blocks_the_run_instead_of_running_the_step_again() {
    let (store, _) = common::store().await;
    STORE.set(store.clone()).ok();
    let _worker = common::spawn_worker(common::worker(&store).register::<ledger>()).await;
    let client = flow::Client::new(store.clone());
    let run = client.send(Ledger {}).await.unwrap().runs[0].1;

    let view = blocked(&client, run).await;
    let error = view.error.clone().unwrap();
    assert!(
        error.contains("1 of the run's 2 step records are missing"),
        "{error}"
    );
    assert_eq!(
        CREDIT_RUNS.load(Ordering::SeqCst),
        1,
        "credit did not run again"
    );

    let settled = client
        .settle_blocked(run, Settle::Cancel("ledger repaired by hand".into()))
        .await
        .unwrap();
    assert_eq!(settled.status, RunStatus::Cancelled);
    assert!(
        settled
            .error
            .unwrap()
            .contains("cancelled by an operator while blocked: ledger repaired by hand")
    );
    assert_eq!(settled.failure_kind, None);
}
