//! `ctx.invoke` through real workers: a child run of another function whose typed
//! output the parent's step returns; the child's failure as an error the parent
//! handles, never retried; a timeout that leaves the child running; several
//! invokes at once; and a child that ends while its parent is executing.

mod common;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flow::prelude::*;
use flow::{RunStatus, StepKind};

const WAIT: Duration = Duration::from_secs(60);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/invoke.resize")]
struct Resize {
    image: String,
    width: u32,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Thumbnail {
    path: String,
    bytes: u64,
}

#[function(event = "test/invoke.resize")]
async fn thumbnail(ctx: &Ctx, resize: Resize) -> Result<Thumbnail, FlowError> {
    let path = ctx
        .run("write", async || {
            Ok::<_, StepError>(format!("{}@{}.png", resize.image, resize.width))
        })
        .await?;
    Ok(Thumbnail {
        path,
        bytes: u64::from(resize.width) * 10,
    })
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/invoke.upload")]
struct Upload {
    image: String,
}

/// Three resizes at once through the reusable `thumbnail`, then one step.
#[function(event = "test/invoke.upload")]
async fn pipeline(ctx: &Ctx, upload: Upload) -> Result<Vec<String>, FlowError> {
    let resize = |width| {
        ctx.invoke(
            "resize",
            thumbnail::with(Resize {
                image: upload.image.clone(),
                width,
            }),
        )
    };
    let (small, medium, large) = tokio::join!(resize(100), resize(400), resize(1200));
    let (small, medium, large) = (small?, medium?, large?);
    let total = small.bytes + medium.bytes + large.bytes;
    let saved = ctx
        .run("save", async || {
            Ok::<_, StepError>(format!("saved {total} bytes"))
        })
        .await?;
    Ok(vec![small.path, medium.path, large.path, saved])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invokes_return_their_runs_typed_outputs_to_a_parent_that_waited_for_them() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<pipeline>()
            .register::<thumbnail>(),
    )
    .await;
    let receipt = client
        .send(Upload {
            image: "cat".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        receipt.runs.len(),
        1,
        "an invoke's event starts nothing else"
    );
    let parent = receipt.runs[0].1;
    let done = client.wait(parent, WAIT).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
    assert_eq!(
        done.output,
        Some(serde_json::json!([
            "cat@100.png",
            "cat@400.png",
            "cat@1200.png",
            "saved 17000 bytes"
        ]))
    );
    // Each invoke is a step of the parent, recording its child's run and output.
    let invokes: Vec<_> = done
        .steps
        .iter()
        .filter(|s| s.kind == StepKind::Invoke)
        .collect();
    assert_eq!(
        invokes.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(),
        ["resize", "resize:1", "resize:2"]
    );
    for step in &invokes {
        let output = step.output.as_ref().unwrap();
        let child: flow::RunId = serde_json::from_value(output["run_id"].clone()).unwrap();
        let run = client.run(child).await.unwrap().unwrap();
        assert_eq!(run.function_id, "thumbnail");
        assert_eq!(run.status, RunStatus::Completed);
        assert_eq!(run.output.as_ref(), Some(&output["output"]));
    }
    let invoked_events = common::count(
        &store,
        "SELECT count(*) FROM flow.events WHERE name = 'flow/function.invoked'",
        "SELECT count(*) FROM flow_events WHERE name = 'flow/function.invoked'",
    )
    .await;
    assert_eq!(invoked_events, 3, "each child's event is named for flow");
    let children = common::count(
        &store,
        "SELECT count(*) FROM flow.runs WHERE function_id = 'thumbnail'",
        "SELECT count(*) FROM flow_runs WHERE function_id = 'thumbnail'",
    )
    .await;
    assert_eq!(
        children, 3,
        "one run per invoke, however often the parent replayed"
    );
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/invoke.charge")]
struct Charge {
    cents: i64,
}

#[function(event = "test/invoke.charge", retries = 2)]
async fn charge_card(ctx: &Ctx, charge: Charge) -> Result<String, FlowError> {
    ctx.run_with(
        "call-the-bank",
        flow::StepOptions {
            retries: Some(1),
            ..flow::StepOptions::DEFAULT
        },
        async || -> Result<String, StepError> {
            Err(StepError::retriable(format!(
                "the bank declined {} cents",
                charge.cents
            )))
        },
    )
    .await
    .map_err(Into::into)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/invoke.checkout")]
struct Checkout {
    cents: i64,
}

/// Handles its child's failure: the invoke's error is an ordinary step error.
#[function(event = "test/invoke.checkout", retries = 3)]
async fn checkout(ctx: &Ctx, checkout: Checkout) -> Result<String, FlowError> {
    match ctx
        .invoke(
            "charge",
            charge_card::with(Charge {
                cents: checkout.cents,
            }),
        )
        .await
    {
        Ok(receipt) => Ok(receipt),
        Err(e) => Ok(format!("fell back after: {}", e.message())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_childs_failure_is_the_invokes_error_and_the_invoke_is_not_retried() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<checkout>()
            .register::<charge_card>(),
    )
    .await;
    let parent = client.send(Checkout { cents: 990 }).await.unwrap().runs[0].1;
    let done = client.wait(parent, WAIT).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
    let output = done.output.unwrap();
    let message = output.as_str().unwrap();
    assert!(
        message.starts_with("fell back after: invoked function `charge_card` failed (run ")
            && message.contains("the bank declined 990 cents"),
        "{message}"
    );
    // The child had its own retries (two attempts of its step); the parent's
    // invoke made one child, whatever the parent's retries.
    let children = common::count(
        &store,
        "SELECT count(*) FROM flow.runs WHERE function_id = 'charge_card'",
        "SELECT count(*) FROM flow_runs WHERE function_id = 'charge_card'",
    )
    .await;
    assert_eq!(children, 1);
    let attempts = common::count(
        &store,
        "SELECT count(*) FROM flow.attempts a JOIN flow.runs r ON r.id = a.run_id
         WHERE r.function_id = 'charge_card'",
        "SELECT count(*) FROM flow_attempts a JOIN flow_runs r ON r.id = a.run_id
         WHERE r.function_id = 'charge_card'",
    )
    .await;
    assert_eq!(
        attempts, 1,
        "the child's step was retried once, by the child"
    );
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/invoke.report")]
struct Report {
    pages: u32,
}

#[function(event = "test/invoke.report")]
async fn render_report(ctx: &Ctx, report: Report) -> Result<u32, FlowError> {
    ctx.sleep("queue-for-the-printer", Duration::from_secs(3600))
        .await?;
    Ok(report.pages)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/invoke.monthly")]
struct Monthly {
    pages: u32,
}

#[function(event = "test/invoke.monthly", retries = 0)]
async fn monthly(ctx: &Ctx, monthly: Monthly) -> Result<u32, FlowError> {
    let pages = ctx
        .invoke(
            "render",
            render_report::with(Report {
                pages: monthly.pages,
            }),
        )
        .timeout(Duration::from_secs(2))
        .await?;
    Ok(pages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoke_that_times_out_fails_its_step_and_leaves_the_child_running() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<monthly>()
            .register::<render_report>(),
    )
    .await;
    let parent = client.send(Monthly { pages: 12 }).await.unwrap().runs[0].1;
    let done = client.wait(parent, WAIT).await.unwrap();
    assert_eq!(done.status, RunStatus::Failed);
    let error = done.error.unwrap();
    assert!(
        error.contains("invoke `render` timed out")
            && error.contains("function `render_report`")
            && error.contains("2s"),
        "{error}"
    );
    let sleeping = common::count(
        &store,
        "SELECT count(*) FROM flow.runs WHERE function_id = 'render_report' AND status = 'sleeping'",
        "SELECT count(*) FROM flow_runs WHERE function_id = 'render_report' AND status = 'sleeping'",
    )
    .await;
    assert_eq!(sleeping, 1, "the child goes on");
}

/// Set once the parent's step below is executing.
static PARENT_IN_STEP: AtomicBool = AtomicBool::new(false);
static STORE: OnceLock<flow::AnyStore> = OnceLock::new();

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/invoke.quick")]
struct Quick {
    n: u32,
}

#[function(event = "test/invoke.quick")]
async fn quick(_ctx: &Ctx, quick: Quick) -> Result<u32, FlowError> {
    Ok(quick.n)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/invoke.gated")]
struct Gated {
    n: u32,
}

/// Ends only once its parent is executing a step.
#[function(event = "test/invoke.gated")]
async fn gated(_ctx: &Ctx, gated: Gated) -> Result<u32, FlowError> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !PARENT_IN_STEP.load(Ordering::SeqCst) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(gated.n)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/invoke.race")]
struct Race {}

#[function(event = "test/invoke.race")]
async fn racing_parent(ctx: &Ctx, _race: Race) -> Result<u32, FlowError> {
    // On the replay after `quick` ended, the step starts before `gated` asks to
    // park (a park waits for running bodies; no body starts after it is asked).
    let (rest, gated) = tokio::join!(
        async {
            let quick = ctx.invoke("quick", quick::with(Quick { n: 1 })).await?;
            // Runs while `gated` ends: its end finds this run executing.
            ctx.run("outlast-the-child", async || {
                PARENT_IN_STEP.store(true, Ordering::SeqCst);
                let store = STORE.get().unwrap();
                let deadline = tokio::time::Instant::now() + WAIT;
                while gated_completed(store).await == 0 && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok::<_, StepError>(())
            })
            .await?;
            Ok::<_, StepError>(quick)
        },
        ctx.invoke("gated", gated::with(Gated { n: 2 }))
    );
    Ok(gated? * 10 + rest?)
}

async fn gated_completed(store: &flow::AnyStore) -> i64 {
    common::count(
        store,
        "SELECT count(*) FROM flow.runs WHERE function_id = 'gated' AND status = 'completed'",
        "SELECT count(*) FROM flow_runs WHERE function_id = 'gated' AND status = 'completed'",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_ends_while_its_parent_executes_wakes_the_parents_next_park() {
    let (store, _) = common::store().await;
    STORE.set(store.clone()).ok();
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<racing_parent>()
            .register::<quick>()
            .register::<gated>(),
    )
    .await;
    let parent = client.send(Race {}).await.unwrap().runs[0].1;
    // Without the mark the parent would park on `gated` after its end, waiting
    // for the invoke's deadline (366 days).
    let done = client.wait(parent, WAIT).await.unwrap();
    assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
    assert_eq!(done.output, Some(serde_json::json!(21)));
}
