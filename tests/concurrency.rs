//! `concurrency(...)`: a limit on runs executing at once per key, enforced by the
//! claim in the database. A busy key's backlog does not hold up the other keys;
//! sleeping and waiting runs hold no slot; a dead worker's slot frees itself when
//! its lease expires; a shared scope counts the runs of every function naming it;
//! a key that cannot be evaluated on an event fails that run, saying why. (Two
//! worker processes competing for one key: `processes.rs`.)

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use flow::RunStatus;
use flow::prelude::*;
use flow::store::{ClaimRequest, Store};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(60);

/// Runs executing now and the most seen at once, per key.
#[derive(Default)]
struct Tracker(Mutex<BTreeMap<String, (u32, u32)>>);

impl Tracker {
    fn enter(&self, key: &str) {
        let mut keys = self.0.lock().unwrap();
        let (now, most) = keys.entry(key.to_owned()).or_default();
        *now += 1;
        *most = (*most).max(*now);
    }

    fn leave(&self, key: &str) {
        self.0.lock().unwrap().get_mut(key).unwrap().0 -= 1;
    }

    fn most(&self, key: &str) -> u32 {
        self.0.lock().unwrap().get(key).map_or(0, |k| k.1)
    }
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/concurrency.job")]
struct Job {
    customer: String,
}

static JOBS: Tracker = Tracker(Mutex::new(BTreeMap::new()));

/// Set once a run of customer `b` has started: the runs of `a` wait for it.
static B_STARTED: std::sync::LazyLock<watch::Sender<bool>> =
    std::sync::LazyLock::new(|| watch::Sender::new(false));

#[step]
async fn work(_ctx: &Ctx, customer: String) -> Result<(), StepError> {
    JOBS.enter(&customer);
    if customer == "b" {
        B_STARTED.send_replace(true);
    } else {
        // Held until `b` starts: `b` can only start while `a` holds its one slot
        // if claims pass over `a`'s backlog.
        let mut started = B_STARTED.subscribe();
        let waited = tokio::time::timeout(WAIT, started.wait_for(|s| *s)).await;
        JOBS.leave(&customer);
        waited
            .map_err(|_| StepError::fatal("`b` never started"))?
            .ok();
        return Ok(());
    }
    JOBS.leave(&customer);
    Ok(())
}

#[function(
    event = "test/concurrency.job",
    concurrency(limit = 1, key = "event.data.customer")
)]
async fn job(ctx: &Ctx, job: Job) -> Result<(), FlowError> {
    Ok(work(ctx, job.customer).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_key_runs_one_at_a_time_and_does_not_hold_up_the_others() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    // Two slots, so a claim looks at 8 candidates: `a`'s backlog of 20 is ahead of
    // `b` in due order, and only passing over a full key reaches `b`.
    let _worker =
        common::spawn_worker(common::worker(&store).concurrency(2).register::<job>()).await;
    let mut runs = Vec::new();
    for _ in 0..20 {
        let receipt = client
            .send(Job {
                customer: "a".into(),
            })
            .await
            .unwrap();
        runs.push(receipt.runs[0].1);
    }
    let b = client
        .send(Job {
            customer: "b".into(),
        })
        .await
        .unwrap()
        .runs[0]
        .1;
    runs.push(b);
    for run in runs {
        let view = client.wait(run, WAIT).await.unwrap();
        assert_eq!(view.status, RunStatus::Completed, "{:?}", view.error);
    }
    assert_eq!(JOBS.most("a"), 1, "customer a's runs ran one at a time");
    assert_eq!(JOBS.most("b"), 1);
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/concurrency.parked")]
struct Parked {
    customer: String,
    first: bool,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/concurrency.go")]
struct Go {
    customer: String,
}

/// The first run of a customer waits for `go`; the others finish at once.
#[function(
    event = "test/concurrency.parked",
    concurrency(limit = 1, key = "event.data.customer")
)]
async fn parked(ctx: &Ctx, event: Parked) -> Result<bool, FlowError> {
    if event.first {
        let go = ctx
            .wait_for_event::<Go>("go")
            .matching(|f| f.customer, event.customer)
            .timeout(Duration::from_secs(3600))
            .await?;
        return Ok(go.is_some());
    }
    Ok(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_holds_no_slot() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker =
        common::spawn_worker(common::worker(&store).concurrency(4).register::<parked>()).await;
    let first = client
        .send(Parked {
            customer: "c".into(),
            first: true,
        })
        .await
        .unwrap()
        .runs[0]
        .1;
    common::eventually(WAIT, "the first run to wait", || async {
        common::status(&client, first).await == RunStatus::Waiting
    })
    .await;
    let second = client
        .send(Parked {
            customer: "c".into(),
            first: false,
        })
        .await
        .unwrap()
        .runs[0]
        .1;
    let done: bool = client.result(second, WAIT).await.unwrap();
    assert!(!done);
    assert_eq!(common::status(&client, first).await, RunStatus::Waiting);
    client
        .send(Go {
            customer: "c".into(),
        })
        .await
        .unwrap();
    let went: bool = client.result(first, WAIT).await.unwrap();
    assert!(went);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_slot_frees_itself_when_its_lease_expires() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let worker = common::worker(&store)
        .concurrency(4)
        .register::<parked>()
        .build()
        .unwrap();
    worker.announce().await.unwrap();
    let first = client
        .send(Parked {
            customer: "d".into(),
            first: false,
        })
        .await
        .unwrap()
        .runs[0]
        .1;
    // A worker that claims the run and dies: its lease (3 s) is never renewed.
    let registry = flow::flow_control::Limited::of([<parked as flow::Function>::DEF]).unwrap();
    let dead: std::sync::Arc<str> = "dead-worker".into();
    let claimed = store
        .claim(
            ClaimRequest {
                owner: &dead,
                functions: &[],
                limited: &registry,
                max: 1,
                lease: Duration::from_secs(3),
            },
            flow::Now::Database,
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let claimed_at = client
        .run(first)
        .await
        .unwrap()
        .unwrap()
        .started_at
        .unwrap();
    let second = client
        .send(Parked {
            customer: "d".into(),
            first: false,
        })
        .await
        .unwrap()
        .runs[0]
        .1;
    let _worker = worker.spawn();
    // The second run starts only once the dead worker's lease has expired; the
    // first is then recovered and finishes too.
    let view = client.wait(second, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Completed, "{:?}", view.error);
    let started = view.started_at.unwrap();
    assert!(
        started >= claimed_at + chrono::Duration::seconds(3),
        "started at {started}, within the dead worker's lease from {claimed_at}"
    );
    let view = client.wait(first, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Completed, "{:?}", view.error);
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/concurrency.llm")]
struct Prompt {
    n: u32,
}

static LLM: Tracker = Tracker(Mutex::new(BTreeMap::new()));

#[step]
async fn call_model(_ctx: &Ctx, n: u32) -> Result<u32, StepError> {
    LLM.enter("llm");
    tokio::time::sleep(Duration::from_millis(20)).await;
    LLM.leave("llm");
    Ok(n)
}

#[function(event = "test/concurrency.llm", concurrency(limit = 1, scope = shared("llm")))]
async fn summarize(ctx: &Ctx, prompt: Prompt) -> Result<u32, FlowError> {
    Ok(call_model(ctx, prompt.n).await?)
}

#[function(event = "test/concurrency.llm", concurrency(limit = 1, scope = shared("llm")))]
async fn classify(ctx: &Ctx, prompt: Prompt) -> Result<u32, FlowError> {
    Ok(call_model(ctx, prompt.n).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_scope_counts_the_runs_of_every_function_naming_it() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .concurrency(8)
            .register::<summarize>()
            .register::<classify>(),
    )
    .await;
    let mut runs = Vec::new();
    for n in 0..6 {
        runs.extend(
            client
                .send(Prompt { n })
                .await
                .unwrap()
                .runs
                .into_iter()
                .map(|r| r.1),
        );
    }
    assert_eq!(runs.len(), 12, "each event starts both functions");
    for run in runs {
        let view = client.wait(run, WAIT).await.unwrap();
        assert_eq!(view.status, RunStatus::Completed, "{:?}", view.error);
    }
    assert_eq!(
        LLM.most("llm"),
        1,
        "one model call at a time across both functions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_does_not_evaluate_fails_its_run_and_says_why() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(common::worker(&store).register::<parked>()).await;
    // Sent by a producer that does not use the Rust type: no `customer`.
    let event = flow::NewEvent::raw(
        "test/concurrency.parked",
        serde_json::json!({"first": false}),
    )
    .unwrap();
    let run = client.send(event).await.unwrap().runs[0].1;
    let view = client.wait(run, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(view.failure_kind, Some(flow::FailureKind::Event));
    let error = view.error.unwrap();
    assert!(
        error.contains("concurrency key `event.data.customer` could not be evaluated"),
        "{error}"
    );
    // A good event of the same function still runs.
    let run = client
        .send(Parked {
            customer: "e".into(),
            first: false,
        })
        .await
        .unwrap()
        .runs[0]
        .1;
    let _: bool = client.result(run, WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimers_racing_for_one_key_take_no_more_than_its_limit() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let worker = common::worker(&store).register::<parked>().build().unwrap();
    worker.announce().await.unwrap();
    let limited = std::sync::Arc::new(
        flow::flow_control::Limited::of([<parked as flow::Function>::DEF]).unwrap(),
    );
    for round in 0..10 {
        // Eight runs of one key, and eight claimers of one run each, let go at once:
        // without the key's lock each would see no run executing and take one.
        let customer = format!("race-{round}");
        for _ in 0..8 {
            let event = Parked {
                customer: customer.clone(),
                first: false,
            };
            client.send(event).await.unwrap();
        }
        let claimed = common::race_eight_claimers(&store, &limited).await;
        assert_eq!(claimed, 1, "round {round}: a limit of 1");
    }
}
