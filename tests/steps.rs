//! Steps against a real PostgreSQL: checkpoints, replay, retries, numbering.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flow::prelude::*;
use flow::{Clock, RunStatus, StepKind};

const WAIT: Duration = Duration::from_secs(30);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/order.placed")]
struct OrderPlaced {
    order: i64,
}

static FETCHES: AtomicU32 = AtomicU32::new(0);

#[step]
async fn fetch_order(_ctx: &Ctx, order: i64) -> Result<Vec<i64>, StepError> {
    FETCHES.fetch_add(1, Ordering::SeqCst);
    Ok(vec![order, order * 10])
}

#[step(retries = 0)]
async fn total(_ctx: &Ctx, lines: &[i64]) -> Result<i64, StepError> {
    Ok(lines.iter().sum())
}

#[function(event = "test/order.placed")]
async fn price_order(ctx: &Ctx, event: OrderPlaced) -> Result<i64, FlowError> {
    let lines = fetch_order(ctx, event.order).await?;
    let sum = total(ctx, &lines).await?;
    Ok(sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_executes_its_steps_and_stores_each_checkpoint() {
    let (store, _) = common::store().await;
    let worker = common::spawn_worker(common::worker(&store).register::<price_order>()).await;
    let client = flow::Client::new(store);

    let receipt = client.send(OrderPlaced { order: 7 }).await.unwrap();
    assert_eq!(receipt.runs.len(), 1);
    let run = receipt.runs[0].1;
    let output: i64 = client.result(run, WAIT).await.unwrap();
    assert_eq!(output, 77);

    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(view.status, RunStatus::Completed);
    assert_eq!(view.function_id, "price_order");
    let keys: Vec<_> = view
        .steps
        .iter()
        .map(|s| (s.key.as_str(), s.position, s.kind))
        .collect();
    assert_eq!(
        keys,
        [
            ("fetch_order", 0, StepKind::Run),
            ("total", 1, StepKind::Run)
        ]
    );
    assert_eq!(view.steps[0].output, Some(serde_json::json!([7, 70])));
    assert_eq!(view.steps[1].attempts, 1);
    assert!(view.failures.is_empty());
    let report = worker.stop().await.unwrap();
    assert_eq!(report.finished, 1);
}

// ---------------------------------------------------------------------------
// Retries: a failing step is retried alone; completed steps never run again.

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/import.requested")]
struct ImportRequested {
    fail_times: u32,
}

static IMPORT_DOWNLOADS: AtomicU32 = AtomicU32::new(0);
static IMPORT_PARSES: AtomicU32 = AtomicU32::new(0);
static IMPORT_ENTRIES: AtomicU32 = AtomicU32::new(0);

#[step]
async fn download(_ctx: &Ctx) -> Result<String, StepError> {
    IMPORT_DOWNLOADS.fetch_add(1, Ordering::SeqCst);
    Ok("a,b,c".into())
}

#[step(retries = 3, backoff(initial = "1ms", max = "5ms"))]
async fn parse(_ctx: &Ctx, csv: &str, fail_times: u32) -> Result<Vec<String>, StepError> {
    let attempt = IMPORT_PARSES.fetch_add(1, Ordering::SeqCst) + 1;
    if attempt <= fail_times {
        return Err(StepError::retriable(format!(
            "parser busy (attempt {attempt})"
        )));
    }
    Ok(csv.split(',').map(str::to_owned).collect())
}

#[function(event = "test/import.requested")]
async fn import(ctx: &Ctx, event: ImportRequested) -> Result<usize, FlowError> {
    IMPORT_ENTRIES.fetch_add(1, Ordering::SeqCst);
    let csv = download(ctx).await?;
    let rows = parse(ctx, &csv, event.fail_times).await?;
    Ok(rows.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_is_retried_alone_and_completed_steps_return_from_the_record() {
    let (store, _) = common::store().await;
    let _worker = common::spawn_worker(common::worker(&store).register::<import>()).await;
    let client = flow::Client::new(store);

    let run = client
        .send(ImportRequested { fail_times: 2 })
        .await
        .unwrap()
        .runs[0]
        .1;
    let rows: usize = client.result(run, WAIT).await.unwrap();
    assert_eq!(rows, 3);
    assert_eq!(
        IMPORT_DOWNLOADS.load(Ordering::SeqCst),
        1,
        "download ran once"
    );
    assert_eq!(
        IMPORT_PARSES.load(Ordering::SeqCst),
        3,
        "parse ran three times"
    );
    // Each retry replays the handler from the top; the download comes from the record.
    assert_eq!(IMPORT_ENTRIES.load(Ordering::SeqCst), 3);

    let view = client.run(run).await.unwrap().unwrap();
    let parse_step = view.steps.iter().find(|s| s.key == "parse").unwrap();
    assert_eq!(parse_step.attempts, 3);
    let failures: Vec<_> = view
        .failures
        .iter()
        .map(|f| (f.step.as_str(), f.attempt))
        .collect();
    assert_eq!(failures, [("parse", 1), ("parse", 2)]);
    assert!(view.failures[0].error.contains("parser busy (attempt 1)"));
}

// ---------------------------------------------------------------------------
// Exhausted retries reach the function body, which may compensate; a handler's
// `Err` fails the run with the error stored.

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/payment.requested")]
struct PaymentRequested {
    compensate: bool,
}

static CHARGES: AtomicU32 = AtomicU32::new(0);

#[step(retries = 2)]
async fn charge(_ctx: &Ctx) -> Result<u32, StepError> {
    CHARGES.fetch_add(1, Ordering::SeqCst);
    Err(StepError::retriable("card declined"))
}

#[step]
async fn refund_hold(_ctx: &Ctx) -> Result<String, StepError> {
    Ok("hold released".into())
}

#[function(
    event = "test/payment.requested",
    backoff(initial = "1ms", max = "2ms")
)]
async fn pay(ctx: &Ctx, event: PaymentRequested) -> Result<String, FlowError> {
    match charge(ctx).await {
        Ok(_) => Ok("charged".into()),
        Err(e) if event.compensate => {
            let note = refund_hold(ctx).await?;
            Ok(format!("{note} after: {e}"))
        }
        Err(e) => Err(FlowError::new(format!("payment failed: {e}"))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_reach_the_body_which_can_compensate_or_fail_the_run() {
    let (store, _) = common::store().await;
    let _worker = common::spawn_worker(common::worker(&store).register::<pay>()).await;
    let client = flow::Client::new(store);

    let saga = client
        .send(PaymentRequested { compensate: true })
        .await
        .unwrap()
        .runs[0]
        .1;
    let out: String = client.result(saga, WAIT).await.unwrap();
    assert_eq!(out, "hold released after: card declined");
    assert_eq!(
        CHARGES.load(Ordering::SeqCst),
        3,
        "one attempt and two retries"
    );
    let view = client.run(saga).await.unwrap().unwrap();
    let charge_step = view.steps.iter().find(|s| s.key == "charge").unwrap();
    assert_eq!(charge_step.error.as_deref(), Some("card declined"));
    assert_eq!(charge_step.attempts, 3);

    let failing = client
        .send(PaymentRequested { compensate: false })
        .await
        .unwrap()
        .runs[0]
        .1;
    let view = client.wait(failing, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(view.error.as_deref(), Some("payment failed: card declined"));
    let err = client.result::<String>(failing, WAIT).await.unwrap_err();
    assert!(matches!(err, flow::Error::RunFailed { .. }), "{err}");
}

// ---------------------------------------------------------------------------
// The function's `retries` is its steps' default (4 unless set); fatal errors
// are not retried; a panic in a step is a retriable failure with its message.

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/flaky")]
struct Flaky {
    mode: String,
}

static FLAKY_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

#[step]
async fn flaky_call(_ctx: &Ctx, mode: &str) -> Result<u32, StepError> {
    FLAKY_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
    match mode {
        "fatal" => Err(StepError::fatal("bad request")),
        "panic" => panic!("index out of bounds"),
        _ => Err(StepError::retriable("timeout")),
    }
}

#[function(event = "test/flaky", backoff(initial = "1ms", max = "2ms"))]
async fn flaky(ctx: &Ctx, event: Flaky) -> Result<u32, FlowError> {
    Ok(flaky_call(ctx, &event.mode).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_retries_fatal_errors_and_panics() {
    let (store, _) = common::store().await;
    let _worker = common::spawn_worker(common::worker(&store).register::<flaky>()).await;
    let client = flow::Client::new(store);

    let run = client
        .send(Flaky {
            mode: "retry".into(),
        })
        .await
        .unwrap()
        .runs[0]
        .1;
    let view = client.wait(run, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(view.steps[0].attempts, 5, "Inngest's default: 4 retries");
    assert_eq!(FLAKY_ATTEMPTS.swap(0, Ordering::SeqCst), 5);
    assert_eq!(
        (
            view.handler_attempts,
            view.failure_kind,
            view.failure_step.as_deref()
        ),
        (1, Some(flow::FailureKind::Step), Some("flaky_call")),
        "a propagated final step error fails the run without retrying the handler"
    );

    let run = client
        .send(Flaky {
            mode: "fatal".into(),
        })
        .await
        .unwrap()
        .runs[0]
        .1;
    let view = client.wait(run, WAIT).await.unwrap();
    assert_eq!(view.error.as_deref(), Some("bad request"));
    assert_eq!(
        FLAKY_ATTEMPTS.swap(0, Ordering::SeqCst),
        1,
        "fatal: no retry"
    );

    let run = client
        .send(Flaky {
            mode: "panic".into(),
        })
        .await
        .unwrap()
        .runs[0]
        .1;
    let view = client.wait(run, WAIT).await.unwrap();
    assert_eq!(
        FLAKY_ATTEMPTS.swap(0, Ordering::SeqCst),
        5,
        "a panic is retried"
    );
    assert!(
        view.failures[0]
            .error
            .contains("panicked: index out of bounds"),
        "{:?}",
        view.failures
    );
}

// ---------------------------------------------------------------------------
// Numbering, join!, the closure form, and the live future.

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/batch")]
struct Batch {
    items: Vec<i64>,
}

static BATCH_ENTRIES: AtomicU32 = AtomicU32::new(0);

#[step]
async fn double(_ctx: &Ctx, n: i64) -> Result<i64, StepError> {
    Ok(n * 2)
}

#[step(id = "fetch-a")]
async fn fetch_a(_ctx: &Ctx) -> Result<String, StepError> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok("a".into())
}

#[step(id = "fetch-b")]
async fn fetch_b(_ctx: &Ctx) -> Result<String, StepError> {
    Ok("b".into())
}

#[function(event = "test/batch")]
async fn batch(ctx: &Ctx, event: Batch) -> Result<(Vec<i64>, String, i64), FlowError> {
    BATCH_ENTRIES.fetch_add(1, Ordering::SeqCst);
    let mut doubled = Vec::new();
    for n in event.items {
        doubled.push(double(ctx, n).await?);
    }
    let (a, b) = tokio::join!(fetch_a(ctx), fetch_b(ctx));
    let sum = ctx
        .run("sum", || async {
            Ok::<_, StepError>(doubled.iter().sum::<i64>())
        })
        .await?;
    Ok((doubled, format!("{}{}", a?, b?), sum))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_ids_are_numbered_in_call_order_and_join_works_without_replay() {
    let (store, _) = common::store().await;
    let _worker = common::spawn_worker(common::worker(&store).register::<batch>()).await;
    let client = flow::Client::new(store);

    let run = client
        .send(Batch {
            items: vec![1, 2, 3],
        })
        .await
        .unwrap()
        .runs[0]
        .1;
    let out: (Vec<i64>, String, i64) = client.result(run, WAIT).await.unwrap();
    assert_eq!(out, (vec![2, 4, 6], "ab".into(), 12));
    let view = client.run(run).await.unwrap().unwrap();
    let keys: Vec<_> = view
        .steps
        .iter()
        .map(|s| (s.key.as_str(), s.position))
        .collect();
    // fetch-a finishes after fetch-b, but positions follow call order.
    assert_eq!(
        keys,
        [
            ("double", 0),
            ("double:1", 1),
            ("double:2", 2),
            ("fetch-a", 3),
            ("fetch-b", 4),
            ("sum", 5)
        ]
    );
    assert_eq!(
        BATCH_ENTRIES.load(Ordering::SeqCst),
        1,
        "a hot run continues its live future"
    );
}

// ---------------------------------------------------------------------------
// Errors of the handler's own code are retried with the function's policy; the
// body replays, so completed steps do not run again. A propagated final step
// error and FlowError::fatal fail the run at once.

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/handler.flaky")]
struct HandlerFlaky {
    fatal: bool,
}

static HANDLER_ENTRIES: AtomicU32 = AtomicU32::new(0);
static LOOKUPS: AtomicU32 = AtomicU32::new(0);

#[step]
async fn look_up(_ctx: &Ctx) -> Result<u32, StepError> {
    LOOKUPS.fetch_add(1, Ordering::SeqCst);
    Ok(7)
}

#[function(event = "test/handler.flaky", backoff(initial = "1ms", max = "2ms"))]
async fn handler_flaky(ctx: &Ctx, event: HandlerFlaky) -> Result<u32, FlowError> {
    let found = look_up(ctx).await?;
    let entry = HANDLER_ENTRIES.fetch_add(1, Ordering::SeqCst);
    if event.fatal {
        return Err(FlowError::fatal("the account is closed"));
    }
    if entry < 2 {
        // The handler's own code fails (say, a parse outside any step).
        let _: u32 = "not a number".parse()?;
    }
    Ok(found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_errors_are_retried_and_completed_steps_are_not_run_again() {
    let (store, _) = common::store().await;
    let _worker = common::spawn_worker(common::worker(&store).register::<handler_flaky>()).await;
    let client = flow::Client::new(store);
    let run = client
        .send(HandlerFlaky { fatal: false })
        .await
        .unwrap()
        .runs[0]
        .1;
    assert_eq!(client.result::<u32>(run, WAIT).await.unwrap(), 7);
    assert_eq!(HANDLER_ENTRIES.swap(0, Ordering::SeqCst), 3);
    assert_eq!(LOOKUPS.swap(0, Ordering::SeqCst), 1, "the step ran once");
    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(view.handler_attempts, 3);
    let handler_failures: Vec<_> = view
        .failures
        .iter()
        .filter(|f| f.step == flow::store::HANDLER_KEY)
        .map(|f| (f.attempt, f.error.as_str()))
        .collect();
    assert_eq!(
        handler_failures,
        [
            (1, "invalid digit found in string"),
            (2, "invalid digit found in string")
        ]
    );

    let fatal = client
        .send(HandlerFlaky { fatal: true })
        .await
        .unwrap()
        .runs[0]
        .1;
    let view = client.wait(fatal, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(view.error.as_deref(), Some("the account is closed"));
    assert_eq!(view.failure_kind, Some(flow::FailureKind::Handler));
    assert_eq!(view.handler_attempts, 1, "fatal: no retry");
    assert_eq!(HANDLER_ENTRIES.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------
// `StepError::retry_after(Duration::ZERO)`: the next attempt is due at once (the
// clock never moves here, and the fallback poll is an hour), and each such
// failure still counts as an attempt, so retries run out as usual.

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/rate-limited")]
struct RateLimited {
    succeed_on: u32,
}

static RATE_LIMITED_CALLS: AtomicU32 = AtomicU32::new(0);

#[step(retries = 2)]
async fn call_rate_limited_api(_ctx: &Ctx, succeed_on: u32) -> Result<u32, StepError> {
    let call = RATE_LIMITED_CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    if call >= succeed_on {
        Ok(call)
    } else {
        Err(StepError::retry_after("429: try again", Duration::ZERO))
    }
}

#[function(event = "test/rate-limited")]
async fn rate_limited(ctx: &Ctx, event: RateLimited) -> Result<u32, FlowError> {
    Ok(call_rate_limited_api(ctx, event.succeed_on).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_zero_is_due_at_once_and_counts_as_an_attempt() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<rate_limited>()
            .clock(clock.clone()),
    )
    .await;
    let client = flow::Client::new(store).with_clock(clock.clone());

    let third_time = client
        .send(RateLimited { succeed_on: 3 })
        .await
        .unwrap()
        .runs[0]
        .1;
    let view = client.wait(third_time, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Completed);
    assert_eq!(view.output, Some(serde_json::json!(3)));
    assert_eq!(view.steps[0].attempts, 3);
    assert_eq!(view.failures.len(), 2, "{:?}", view.failures);
    for attempt in &view.failures {
        assert_eq!(attempt.retry_at, clock.now(), "due at once: {attempt:?}");
    }

    // Never succeeding: one attempt and two retries, then the run fails.
    let never = client
        .send(RateLimited {
            succeed_on: u32::MAX,
        })
        .await
        .unwrap()
        .runs[0]
        .1;
    let view = client.wait(never, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(view.steps[0].attempts, 3);
    assert_eq!(RATE_LIMITED_CALLS.load(Ordering::SeqCst), 6);
}
