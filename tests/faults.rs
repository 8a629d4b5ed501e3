//! Faults that used to lose work or repeat side effects, each driven against the
//! real store of the backend under test. Where a fault must be provoked (a dropped
//! connection, a row the database refuses), `Faulty` wraps the real store and
//! changes what reaches it; the database's own answer does the rest.

mod common;

use common::faulty::Faulty;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flow::prelude::*;
use flow::{AnyStore, FailureKind, NewEvent, RunStatus, StepKind};

const WAIT: Duration = Duration::from_secs(60);

fn worker(store: Faulty) -> flow::WorkerBuilder<Faulty> {
    flow_core::Worker::builder(store)
        .poll_interval(Duration::from_secs(3600))
        .concurrency(8)
}

// ---------------------------------------------------------------------------
// A transient failure while a checkpoint is written is retried; the step body
// does not run again.

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/charge.requested")]
struct ChargeRequested {
    cents: i64,
}

static CHARGES: AtomicU32 = AtomicU32::new(0);

#[function(event = "test/charge.requested")]
async fn charge(ctx: &Ctx, event: ChargeRequested) -> Result<i64, FlowError> {
    let charged = ctx
        .run("charge-card", || async {
            CHARGES.fetch_add(1, Ordering::SeqCst);
            Ok::<_, StepError>(event.cents)
        })
        .await?;
    Ok(charged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_write_failure_is_retried_without_running_the_step_again() {
    let (store, _) = common::store().await;
    let faulty = Faulty::new(store.clone(), 3);
    let worker = worker(faulty.clone()).register::<charge>().build().unwrap();
    worker.announce().await.unwrap();
    let running = worker.spawn();
    let client = flow_core::Client::new(faulty.clone());
    let run = client
        .send(ChargeRequested { cents: 1250 })
        .await
        .unwrap()
        .runs[0]
        .1;
    assert_eq!(client.result::<i64>(run, WAIT).await.unwrap(), 1250);
    assert_eq!(
        faulty.transient.load(Ordering::SeqCst),
        0,
        "the faults happened"
    );
    assert_eq!(
        CHARGES.load(Ordering::SeqCst),
        1,
        "the card was charged once"
    );
    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(view.steps.len(), 1);
    assert_eq!(view.steps[0].attempts, 1);
    running.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// A checkpoint the database refuses fails its run with the database's message,
// once; the other runs, whose writes shared its batches, complete.

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/mixed.batch")]
struct MixedBatch {
    poison: bool,
}

static POISON_BODIES: AtomicU32 = AtomicU32::new(0);

#[function(event = "test/mixed.batch", retries = 0)]
async fn mixed(ctx: &Ctx, event: MixedBatch) -> Result<u32, FlowError> {
    let mut done = 0;
    for _ in 0..5 {
        done += ctx
            .run("work", || async { Ok::<_, StepError>(1u32) })
            .await?;
    }
    if event.poison {
        ctx.run("poison", || async {
            POISON_BODIES.fetch_add(1, Ordering::SeqCst);
            Ok::<_, StepError>(())
        })
        .await?;
    }
    Ok(done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_checkpoint_fails_its_run_once_and_holds_no_other_run_hostage() {
    // SQLite stores NUL in text; PostgreSQL refuses it, which is the fault here.
    let (store, _) = common::pg_store().await;
    let faulty = Faulty::new(store, 0);
    let worker = worker(faulty.clone()).register::<mixed>().build().unwrap();
    worker.announce().await.unwrap();
    let running = worker.spawn();
    let client = flow_core::Client::new(faulty);
    let receipt = client
        .send_batch((0..8).map(|i| MixedBatch { poison: i == 3 }))
        .await
        .unwrap();
    for (i, (_, run)) in receipt.runs.iter().enumerate() {
        let view = client.wait(*run, WAIT).await.unwrap();
        if i == 3 {
            assert_eq!(view.status, RunStatus::Failed);
            assert_eq!(view.failure_kind, Some(FailureKind::Storage));
            assert_eq!(view.failure_step.as_deref(), Some("poison"));
            let error = view.error.unwrap();
            assert!(
                error.contains("refused to store step `poison`") && error.contains("0x00"),
                "{error}"
            );
            assert_eq!(view.steps.len(), 5, "the steps before it are kept");
        } else {
            assert_eq!(
                view.status,
                RunStatus::Completed,
                "run {i}: {:?}",
                view.error
            );
            assert_eq!(view.output, Some(serde_json::json!(5)));
        }
    }
    assert_eq!(POISON_BODIES.load(Ordering::SeqCst), 1, "no loop");
    running.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// NUL characters are refused before anything is written, on every backend.

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/nul.output")]
struct NulOutput {}

static NUL_BODIES: AtomicU32 = AtomicU32::new(0);

#[function(event = "test/nul.output")]
async fn nul_output(ctx: &Ctx, _event: NulOutput) -> Result<String, FlowError> {
    let text = ctx
        .run("read-file", || async {
            NUL_BODIES.fetch_add(1, Ordering::SeqCst);
            Ok::<_, StepError>("header\0binary".to_string())
        })
        .await?;
    Ok(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_output_with_a_nul_character_fails_the_step_once_naming_it() {
    let (store, _) = common::store().await;
    let _worker = common::spawn_worker(common::worker(&store).register::<nul_output>()).await;
    let client = flow::Client::new(store);
    let run = client.send(NulOutput {}).await.unwrap().runs[0].1;
    let view = client.wait(run, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Failed);
    let error = view.error.unwrap();
    assert!(
        error.contains("step `read-file`") && error.contains("NUL character"),
        "{error}"
    );
    assert_eq!(
        (view.failure_kind, view.failure_step.as_deref()),
        (Some(FailureKind::Step), Some("read-file"))
    );
    assert_eq!(view.steps[0].attempts, 1, "not retried");
    assert_eq!(NUL_BODIES.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_with_a_nul_character_is_refused_at_send_naming_where() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store);
    let event = NewEvent::raw(
        "test/nul.output",
        serde_json::json!({ "rows": [{ "note": "a\u{0}b" }] }),
    )
    .unwrap();
    let err = client.send(event).await.unwrap_err().to_string();
    assert!(
        err.contains("NUL character") && err.contains("$.rows[0].note"),
        "{err}"
    );
    let event = NewEvent::raw("test/nul.output", serde_json::json!({}))
        .unwrap()
        .id("a\0b");
    let err = client.send(event).await.unwrap_err().to_string();
    assert!(err.contains("producer id") && err.contains("NUL"), "{err}");
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/loud.failure")]
struct LoudFailure {}

#[function(event = "test/loud.failure", retries = 0)]
async fn loud_failure(ctx: &Ctx, _event: LoudFailure) -> Result<(), FlowError> {
    ctx.run("explode", || async {
        let mut message = String::from("bad\0byte: ");
        message.push_str(&"x".repeat(1024 * 1024));
        Err::<(), _>(StepError::fatal(message))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_error_message_with_a_nul_is_stored_cut_and_clean() {
    let (store, _) = common::store().await;
    let _worker = common::spawn_worker(common::worker(&store).register::<loud_failure>()).await;
    let client = flow::Client::new(store);
    let run = client.send(LoudFailure {}).await.unwrap().runs[0].1;
    let view = client.wait(run, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Failed);
    let error = view.error.unwrap();
    assert!(
        error.starts_with("bad\u{FFFD}byte: xxx"),
        "{}",
        &error[..40]
    );
    assert!(
        error.ends_with(&format!(
            "[cut by flow: the message was {} bytes]",
            "bad\0byte: ".len() + 1024 * 1024 + 2
        )),
        "{}",
        &error[error.len() - 80..]
    );
    assert!(error.len() < flow::ERROR_MESSAGE_BYTES + 100);
    let step_error = view.steps[0].error.as_deref().unwrap();
    assert!(step_error.contains("[cut by flow"), "the step's error too");
}

// ---------------------------------------------------------------------------
// Sleeps and clock reads take their place in the order when they are called.

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/called.order")]
struct CalledOrder {}

static FLAKY_TRIES: AtomicU32 = AtomicU32::new(0);

#[function(event = "test/called.order")]
async fn called_order(ctx: &Ctx, _event: CalledOrder) -> Result<String, FlowError> {
    // Called first, awaited after the step: the sleep and the clock read hold
    // positions 0 and 1, the step 2, whatever the order they are polled in.
    let nap = ctx.sleep("nap", Duration::ZERO);
    let now = ctx.now();
    let fetched = ctx
        .run("fetch", || async { Ok::<_, StepError>("data".to_string()) })
        .await?;
    nap.await?;
    let at = now.await;
    // Fails once, so the run replays from its record: no false non-determinism.
    ctx.run("flaky", || async {
        if FLAKY_TRIES.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(StepError::retry_after("once", Duration::ZERO))
        } else {
            Ok(())
        }
    })
    .await?;
    Ok(format!("{fetched} at {}", at.timestamp()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeps_and_clock_reads_take_their_position_when_called() {
    let (store, _) = common::store().await;
    let _worker = common::spawn_worker(common::worker(&store).register::<called_order>()).await;
    let client = flow::Client::new(store);
    let run = client.send(CalledOrder {}).await.unwrap().runs[0].1;
    let output: String = client.result(run, WAIT).await.unwrap();
    assert!(output.starts_with("data at "), "{output}");
    let view = client.run(run).await.unwrap().unwrap();
    let order: Vec<_> = view
        .steps
        .iter()
        .map(|s| (s.key.as_str(), s.position, s.kind))
        .collect();
    assert_eq!(
        order,
        [
            ("nap", 0, StepKind::Sleep),
            ("now", 1, StepKind::Now),
            ("fetch", 2, StepKind::Run),
            ("flaky", 3, StepKind::Run),
        ]
    );
    assert_eq!(view.failures.len(), 1, "it replayed once after the failure");
}

// ---------------------------------------------------------------------------
// A step called from a task that outlives its handler returns an error once the
// run's execution has ended; its body never runs.

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/spawned.late")]
struct SpawnedLate {}

static LATE_BODIES: AtomicU32 = AtomicU32::new(0);
static HANDLER_RETURNED: tokio::sync::Notify = tokio::sync::Notify::const_new();
static LATE_RESULT: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<Result<u32, StepError>>>> =
    std::sync::Mutex::new(None);

#[function(event = "test/spawned.late")]
async fn spawned_late(ctx: &Ctx, _event: SpawnedLate) -> Result<(), FlowError> {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        // Called only once the run has finished.
        HANDLER_RETURNED.notified().await;
        let result = ctx
            .run("late", || async {
                LATE_BODIES.fetch_add(1, Ordering::SeqCst);
                Ok::<_, StepError>(1u32)
            })
            .await;
        if let Some(reply) = LATE_RESULT.lock().unwrap().take() {
            let _ = reply.send(result);
        }
    });
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_in_a_task_that_outlives_its_run_returns_an_error() {
    let (reply, late) = tokio::sync::oneshot::channel();
    *LATE_RESULT.lock().unwrap() = Some(reply);
    let (store, _) = common::store().await;
    let _worker = common::spawn_worker(common::worker(&store).register::<spawned_late>()).await;
    let client = flow::Client::new(store);
    let run = client.send(SpawnedLate {}).await.unwrap().runs[0].1;
    assert_eq!(
        client.wait(run, WAIT).await.unwrap().status,
        RunStatus::Completed
    );
    HANDLER_RETURNED.notify_one();
    let result = tokio::time::timeout(WAIT, late)
        .await
        .expect("the late step returned")
        .unwrap();
    let error = result.unwrap_err();
    assert!(
        error.message().contains("execution on this worker ended"),
        "{error}"
    );
    assert_eq!(LATE_BODIES.load(Ordering::SeqCst), 0, "its body never ran");
    assert!(client.run(run).await.unwrap().unwrap().steps.is_empty());
}

// ---------------------------------------------------------------------------
// A worker that cannot renew stops its executions before their lease lapses,
// instead of running step bodies that another worker then runs too.

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/cut.off")]
struct CutOff {}

static CUT_OFF_STARTED: tokio::sync::Notify = tokio::sync::Notify::const_new();
static CUT_OFF_STOPPED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Notifies when the step body is dropped before it finished.
struct Stopped;

impl Drop for Stopped {
    fn drop(&mut self) {
        CUT_OFF_STOPPED.notify_one();
    }
}

#[function(event = "test/cut.off")]
async fn cut_off(ctx: &Ctx, _event: CutOff) -> Result<(), FlowError> {
    ctx.run("long-call", || async {
        let _stopped = Stopped;
        CUT_OFF_STARTED.notify_one();
        std::future::pending::<()>().await;
        Ok::<_, StepError>(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_cannot_renew_stops_its_runs_before_the_lease_lapses() {
    let (store, _) = common::store().await;
    let faulty = Faulty {
        renewals_fail: true,
        ..Faulty::new(store.clone(), 0)
    };
    // One slot: the worker cannot claim the run again (which would also stop the
    // old execution); only the deadline can.
    let worker = worker(faulty)
        .register::<cut_off>()
        .concurrency(1)
        .lease(Duration::from_secs(3))
        .renew_every(Duration::from_millis(250))
        .build()
        .unwrap();
    worker.announce().await.unwrap();
    let running = worker.spawn();
    let client = flow::Client::new(store);
    let run = client.send(CutOff {}).await.unwrap().runs[0].1;
    CUT_OFF_STARTED.notified().await;
    // Nothing renews the lease: the execution stops by itself, its body dropped.
    tokio::time::timeout(WAIT, CUT_OFF_STOPPED.notified())
        .await
        .expect("the execution stopped at its lease deadline");
    let view = client.run(run).await.unwrap().unwrap();
    assert!(
        view.steps.is_empty(),
        "nothing of the stopped body was written"
    );
    let report = running.stop().await.unwrap();
    assert!(report.lost >= 1, "{report:?}");
}

// ---------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/corrupt.step")]
struct CorruptStep {}

static CORRUPT_STORE: std::sync::OnceLock<AnyStore> = std::sync::OnceLock::new();
static RECORD_RUNS: AtomicU32 = AtomicU32::new(0);
static TRIP_TRIES: AtomicU32 = AtomicU32::new(0);

#[step]
async fn record_it(_ctx: &Ctx) -> Result<u32, StepError> {
    Ok(RECORD_RUNS.fetch_add(1, Ordering::SeqCst))
}

/// Its first attempt corrupts the recorded row of `record_it` and fails, so the
/// run must load that row again.
#[step(backoff(initial = "1ms", max = "2ms"))]
async fn trip(ctx: &Ctx) -> Result<(), StepError> {
    if TRIP_TRIES.fetch_add(1, Ordering::SeqCst) == 0 {
        common::execute_for_run(
            CORRUPT_STORE.get().unwrap(),
            ctx.run_id(),
            "UPDATE flow.steps SET kind = 'bogus' WHERE run_id = $1",
            "UPDATE flow_steps SET kind = 'bogus' WHERE run_id = ?",
        )
        .await;
        return Err(StepError::retriable("again"));
    }
    Ok(())
}

#[function(event = "test/corrupt.step")]
async fn corrupt_step(ctx: &Ctx, _event: CorruptStep) -> Result<(), FlowError> {
    record_it(ctx).await?;
    trip(ctx).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_that_does_not_read_fails_its_run_instead_of_looping() {
    let (store, _) = common::store().await;
    CORRUPT_STORE.set(store.clone()).ok();
    let _worker = common::spawn_worker(common::worker(&store).register::<corrupt_step>()).await;
    let client = flow::Client::new(store.clone());
    let run = client.send(CorruptStep {}).await.unwrap().runs[0].1;
    // The run's view holds the corrupt step too: reading it is an error that names
    // the step, not a panic. The run's own row says how it ended.
    common::eventually(WAIT, "the run to fail", || async {
        common::run_row(&store, run).await.0 == "failed"
    })
    .await;
    let (_, kind, error) = common::run_row(&store, run).await;
    assert_eq!(kind.as_deref(), Some("storage"));
    let error = error.unwrap_or_default();
    assert!(
        error.contains("checkpoints") && error.contains("`record_it`") && error.contains("bogus"),
        "the message says what does not read: {error}"
    );
    let read = client.run(run).await.unwrap_err().to_string();
    assert!(
        read.contains("`record_it`") && read.contains("bogus"),
        "{read}"
    );
    assert_eq!(RECORD_RUNS.load(Ordering::SeqCst), 1, "no step ran again");
}

// ---------------------------------------------------------------------------
// A claim that fails (the database is unreachable) is tried again a second later,
// not at once in a loop: the due runs it left would send it straight back.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_claim_is_tried_again_after_a_pause_not_in_a_loop() {
    let (store, _) = common::store().await;
    let faulty = Faulty::new(store.clone(), 0);
    let worker = worker(faulty.clone()).register::<charge>().build().unwrap();
    worker.announce().await.unwrap();
    let client = flow_core::Client::new(faulty.clone());
    let run = client
        .send(ChargeRequested { cents: 5 })
        .await
        .unwrap()
        .runs[0]
        .1;
    faulty.failing_claims.store(3, Ordering::SeqCst);
    let _running = worker.spawn();
    let view = client.wait(run, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Completed);
    let claims = faulty.claims.lock().unwrap().clone();
    assert!(
        claims.len() >= 4,
        "three failed claims and one that took the run"
    );
    // Three failures, so three pauses of a second; a wake-up (the notification
    // listener's first, at start) may cut one short.
    let failing = claims[3] - claims[0];
    assert!(
        failing >= Duration::from_millis(1900),
        "three failed claims and the next within {failing:?}"
    );
}
