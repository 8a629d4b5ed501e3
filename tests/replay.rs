//! Replay: journaled clock and ids, and runs that must fail at once (nested steps,
//! handler panics, payloads that do not deserialize, limits). Runs whose code no
//! longer replays are held as blocked: tests/blocked.rs.

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flow::prelude::*;
use flow::{Limits, NewEvent, RunStatus};

const WAIT: Duration = Duration::from_secs(30);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/stamp")]
struct Stamp {}

type Seen = (chrono::DateTime<chrono::Utc>, uuid::Uuid, f64);
static FIRST_SEEN: Mutex<Option<Seen>> = Mutex::new(None);
static STAMP_TRIES: AtomicU32 = AtomicU32::new(0);

#[step(backoff(initial = "1ms", max = "2ms"))]
async fn fail_once(_ctx: &Ctx) -> Result<(), StepError> {
    if STAMP_TRIES.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(StepError::retriable("first attempt fails"));
    }
    Ok(())
}

#[function(event = "test/stamp")]
async fn stamp(ctx: &Ctx, _event: Stamp) -> Result<Seen, FlowError> {
    let seen = (ctx.now().await, ctx.uuid(), ctx.random());
    FIRST_SEEN.lock().unwrap().get_or_insert(seen);
    fail_once(ctx).await?; // forces a replay
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn now_uuid_and_random_are_the_same_on_replay() {
    let (store, _) = common::store().await;
    let _worker = common::spawn_worker(common::worker(&store).register::<stamp>()).await;
    let client = flow::Client::new(store);
    let run = client.send(Stamp {}).await.unwrap().runs[0].1;
    let replayed: Seen = client.result(run, WAIT).await.unwrap();
    assert_eq!(
        STAMP_TRIES.load(Ordering::SeqCst),
        2,
        "the run was replayed"
    );
    let first = FIRST_SEEN.lock().unwrap().unwrap();
    assert_eq!(replayed.0, first.0);
    assert_eq!(replayed.1, first.1);
    assert_eq!(replayed.2, first.2);
    assert!((0.0..1.0).contains(&first.2));
    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(view.steps[0].key, "now");
    assert_eq!(view.steps[0].kind, flow::StepKind::Now);
}

// ---------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/nested")]
struct Nested {}

#[step]
async fn inner(_ctx: &Ctx) -> Result<u8, StepError> {
    Ok(1)
}

// Inside a `#[step]` body this is a compile error (the ui case
// step-cannot-call-a-step); a closure step sees the handler's `ctx`, so there the
// run-time check is what stops it.
#[function(event = "test/nested")]
async fn nested(ctx: &Ctx, _event: Nested) -> Result<u8, FlowError> {
    Ok(ctx.run("outer", || async { inner(ctx).await }).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_inside_a_step_fails_the_run_naming_both() {
    let (store, _) = common::store().await;
    let _worker = common::spawn_worker(common::worker(&store).register::<nested>()).await;
    let client = flow::Client::new(store);
    let run = client.send(Nested {}).await.unwrap().runs[0].1;
    let view = client.wait(run, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Failed);
    let error = view.error.unwrap();
    assert!(
        error.contains("step `inner` was called inside the body of step `outer`"),
        "{error}"
    );
    assert!(view.steps.is_empty(), "nothing was checkpointed");
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/nap.in.step")]
struct NapInStep {}

// As above: a compile error in a `#[step]` body (step-cannot-sleep), a run-time
// one in a closure step.
#[function(event = "test/nap.in.step")]
async fn nap_in_step(ctx: &Ctx, _event: NapInStep) -> Result<(), FlowError> {
    Ok(ctx
        .run("wait_for_payment", || async {
            ctx.sleep("grace", Duration::from_secs(60)).await
        })
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_inside_a_step_fails_the_run_saying_where_sleeps_go() {
    let (store, _) = common::store().await;
    let _worker = common::spawn_worker(common::worker(&store).register::<nap_in_step>()).await;
    let client = flow::Client::new(store);
    let run = client.send(NapInStep {}).await.unwrap().runs[0].1;
    let view = client.wait(run, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Failed);
    let error = view.error.unwrap();
    assert!(
        error.contains("sleep `grace` was called inside the body of step `wait_for_payment`")
            && error.contains("from the function body between steps"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/signup")]
struct Signup {
    user: User,
}

#[derive(Serialize, Deserialize)]
struct User {
    id: i64,
    email: String,
}

static SIGNUP_ENTRIES: AtomicU32 = AtomicU32::new(0);

#[function(
    event = "test/signup",
    retries = 5,
    backoff(initial = "1ms", max = "2ms")
)]
async fn welcome(_ctx: &Ctx, event: Signup) -> Result<i64, FlowError> {
    SIGNUP_ENTRIES.fetch_add(1, Ordering::SeqCst);
    if event.user.email.is_empty() {
        panic!("no email for user {}", event.user.id);
    }
    Ok(event.user.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_does_not_deserialize_fails_its_run_at_once_naming_type_and_path() {
    let (store, _) = common::store().await;
    let _worker = common::spawn_worker(common::worker(&store).register::<welcome>()).await;
    let client = flow::Client::new(store);
    let bad = NewEvent::raw(
        "test/signup",
        serde_json::json!({"user": {"id": "seven", "email": "a@b"}}),
    )
    .unwrap();
    let run = client.send(bad).await.unwrap().runs[0].1;
    let view = client.wait(run, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Failed);
    let error = view.error.unwrap();
    assert!(error.contains("Signup"), "{error}");
    assert!(error.contains("at `user.id`"), "{error}");
    assert_eq!(
        SIGNUP_ENTRIES.load(Ordering::SeqCst),
        0,
        "the handler never ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_handler_outside_steps_is_retried_then_fails_the_run() {
    let (store, _) = common::store().await;
    let _worker = common::spawn_worker(common::worker(&store).register::<welcome>()).await;
    let client = flow::Client::new(store);
    let run = client
        .send(Signup {
            user: User {
                id: 9,
                email: String::new(),
            },
        })
        .await
        .unwrap()
        .runs[0]
        .1;
    let view = client.wait(run, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(
        view.error.as_deref(),
        Some("the handler panicked outside any step: no email for user 9")
    );
    assert_eq!(view.failure_kind, Some(flow::FailureKind::Panic));
    // retries = 5: the first attempt and five more.
    assert_eq!(SIGNUP_ENTRIES.load(Ordering::SeqCst), 6);
    assert_eq!(view.handler_attempts, 6);
}

// ---------------------------------------------------------------------------

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/report")]
struct Report {
    bytes: usize,
    steps: usize,
}

#[step(retries = 3)]
async fn render(_ctx: &Ctx, bytes: usize) -> Result<String, StepError> {
    Ok("x".repeat(bytes))
}

#[function(event = "test/report")]
async fn report(ctx: &Ctx, event: Report) -> Result<usize, FlowError> {
    let mut total = 0;
    for _ in 0..event.steps {
        total += render(ctx, event.bytes).await?.len();
    }
    Ok(total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_fail_with_a_message_that_names_them() {
    let (store, _) = common::store().await;
    let limits = Limits {
        step_output_bytes: 1000,
        run_state_bytes: 2500,
        steps_per_run: 4,
        ..Limits::DEFAULT
    };
    let _worker =
        common::spawn_worker(common::worker(&store).register::<report>().limits(limits)).await;
    let client = flow::Client::new(store);

    let big = client
        .send(Report {
            bytes: 2000,
            steps: 1,
        })
        .await
        .unwrap()
        .runs[0]
        .1;
    let view = client.wait(big, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Failed);
    let error = view.error.unwrap();
    assert!(
        error.contains("over the limit of 1000 bytes")
            && error.contains("Limits::step_output_bytes"),
        "{error}"
    );
    assert_eq!(view.steps[0].attempts, 1, "a limit is not retried");

    let state = client
        .send(Report {
            bytes: 900,
            steps: 3,
        })
        .await
        .unwrap()
        .runs[0]
        .1;
    let error = client.wait(state, WAIT).await.unwrap().error.unwrap();
    assert!(error.contains("Limits::run_state_bytes"), "{error}");

    let many = client
        .send(Report { bytes: 1, steps: 5 })
        .await
        .unwrap()
        .runs[0]
        .1;
    let view = client.wait(many, WAIT).await.unwrap();
    let error = view.error.unwrap();
    assert!(
        error.contains("limit of 4 steps per run") && error.contains("Limits::steps_per_run"),
        "{error}"
    );
    assert_eq!(view.steps.len(), 4);

    // The event is part of what the run stores.
    let heavy = flow::NewEvent::raw(
        "test/report",
        serde_json::json!({ "bytes": 1, "steps": 1, "padding": "x".repeat(3000) }),
    )
    .unwrap();
    let heavy = client.send(heavy).await.unwrap().runs[0].1;
    let view = client.wait(heavy, WAIT).await.unwrap();
    assert_eq!(view.failure_kind, Some(flow::FailureKind::Limit));
    let error = view.error.unwrap();
    assert!(error.contains("Limits::run_state_bytes"), "{error}");
    assert!(view.steps.is_empty(), "no step ran");
}
