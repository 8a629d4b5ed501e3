//! `batch_events` and `debounce` (flow_core::grouping), against a test clock: a
//! batch starts when full or when its timeout passes, per key; a debounce starts
//! one run with the last event (or all, `events = all`) once its key has been
//! quiet for `period`, and no later than `timeout` after its first event; a
//! group's events reach the handler in the order sent, each once.

mod common;

use std::time::Duration;

use flow::prelude::*;
use flow::{NewEvent, RunId, RunStatus, Store};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/grouping.click")]
struct Click {
    user: String,
    n: u32,
}

/// Up to three clicks of a user per run, or fewer ten seconds after the first.
#[function(
    event = "test/grouping.click",
    batch_events(max_size = 3, timeout = "10s", key = "event.data.user")
)]
async fn count_clicks(_ctx: &Ctx, clicks: Vec<Click>) -> Result<Vec<String>, FlowError> {
    Ok(clicks
        .iter()
        .map(|c| format!("{}{}", c.user, c.n))
        .collect())
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/grouping.edit")]
struct Edit {
    doc: String,
    n: u32,
}

/// Reindexes a document a minute after its last edit, and at least every 100 s
/// while edits keep coming.
#[function(
    event = "test/grouping.edit",
    debounce(period = "1m", key = "event.data.doc", timeout = "100s")
)]
async fn reindex(_ctx: &Ctx, edit: Edit) -> Result<String, FlowError> {
    Ok(format!("{}{}", edit.doc, edit.n))
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/grouping.note")]
struct Note {
    n: u32,
}

/// Every note of a quiet minute, in one run.
#[function(event = "test/grouping.note", debounce(period = "1m", events = all))]
async fn digest(_ctx: &Ctx, notes: Vec<Note>) -> Result<Vec<u32>, FlowError> {
    Ok(notes.iter().map(|n| n.n).collect())
}

fn click(user: &str, n: u32) -> NewEvent {
    NewEvent::raw("test/grouping.click", json!({ "user": user, "n": n })).unwrap()
}

fn edit(doc: &str, n: u32) -> NewEvent {
    NewEvent::raw("test/grouping.edit", json!({ "doc": doc, "n": n })).unwrap()
}

fn note(n: u32) -> NewEvent {
    NewEvent::raw("test/grouping.note", json!({ "n": n })).unwrap()
}

struct Setup {
    store: flow::AnyStore,
    client: flow::Client,
    clock: flow::ManualClock,
}

impl Setup {
    /// A worker of all three functions, announced (so sends group their
    /// events), with leases long enough for the clock's jumps.
    async fn new() -> Setup {
        let (store, _) = common::store().await;
        let clock = common::clock();
        let client = flow::Client::new(store.clone()).with_clock(clock.clone());
        let setup = Setup {
            store,
            client,
            clock,
        };
        setup.builder().build().unwrap().announce().await.unwrap();
        setup
    }

    fn builder(&self) -> flow::WorkerBuilder<flow::AnyStore> {
        common::worker(&self.store)
            .clock(self.clock.clone())
            .lease(Duration::from_secs(3 * 3600))
            .register::<count_clicks>()
            .register::<reindex>()
            .register::<digest>()
    }

    /// The run each event of `events` joined, in order.
    async fn send(&self, events: Vec<NewEvent>) -> Vec<RunId> {
        let receipt = self.client.send_batch(events).await.unwrap();
        assert!(receipt.skipped.is_empty(), "{:?}", receipt.skipped);
        receipt
            .event_ids
            .iter()
            .map(|event| {
                let runs: Vec<RunId> = receipt
                    .runs
                    .iter()
                    .filter(|(e, _)| e == event)
                    .map(|(_, run)| *run)
                    .collect();
                assert_eq!(runs.len(), 1, "each event joins one run: {receipt:?}");
                runs[0]
            })
            .collect()
    }

    async fn status(&self, run: RunId) -> RunStatus {
        common::status(&self.client, run).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_starts_when_full_or_when_its_timeout_passes_per_key() {
    let s = Setup::new().await;
    // Seven clicks of `a` and two of `b`, interleaved, over two sends.
    let mut runs = s
        .send(vec![
            click("a", 1),
            click("b", 1),
            click("a", 2),
            click("a", 3),
            click("a", 4),
        ])
        .await;
    runs.extend(
        s.send(vec![
            click("a", 5),
            click("b", 2),
            click("a", 6),
            click("a", 7),
        ])
        .await,
    );
    let (a1, b1, a4, a7) = (runs[0], runs[1], runs[4], runs[8]);
    assert_eq!([runs[2], runs[3]], [a1, a1]);
    assert_eq!([runs[5], runs[7]], [a4, a4]);
    assert_eq!(runs[6], b1);
    assert_eq!(
        [a1, b1, a4, a7]
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        4,
        "four batches: {runs:?}"
    );
    // The full batches are due; the others wait for their timeout.
    let _worker = common::spawn_worker(s.builder()).await;
    let full: Vec<String> = s.client.result(a1, WAIT).await.unwrap();
    assert_eq!(full, ["a1", "a2", "a3"]);
    let full: Vec<String> = s.client.result(a4, WAIT).await.unwrap();
    assert_eq!(full, ["a4", "a5", "a6"]);
    assert_eq!(s.status(b1).await, RunStatus::Queued);
    assert_eq!(s.status(a7).await, RunStatus::Queued);
    // A click of `b` after the first's timeout opens a batch of its own.
    s.clock.advance(Duration::from_secs(10));
    let b: Vec<String> = s.client.result(b1, WAIT).await.unwrap();
    assert_eq!(b, ["b1", "b2"]);
    let a: Vec<String> = s.client.result(a7, WAIT).await.unwrap();
    assert_eq!(a, ["a7"]);
    let next = s.send(vec![click("b", 3)]).await[0];
    assert_ne!(next, b1);
    assert_eq!(s.status(next).await, RunStatus::Queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debounce_runs_once_with_the_last_event_after_a_quiet_period() {
    let s = Setup::new().await;
    // Announced with its rule, which senders apply.
    let functions = s.client.functions().await.unwrap();
    let reindex = functions.iter().find(|f| f.id == "reindex").unwrap();
    assert_eq!(
        reindex.send_rules,
        Some(json!({
            "group": {
                "max_size": 1000,
                "period_ms": 60_000,
                "timeout_ms": 100_000,
                "key": "event.data.doc"
            }
        }))
    );
    let _worker = common::spawn_worker(s.builder()).await;
    let first = s.send(vec![edit("x", 1), edit("y", 1)]).await;
    s.clock.advance(Duration::from_secs(30));
    // Half a minute on, `x` is edited again: its run moves a minute on.
    let again = s.send(vec![edit("x", 2)]).await[0];
    assert_eq!(again, first[0]);
    s.clock.advance(Duration::from_secs(31));
    // `y` was quiet for a minute: it runs; `x` was not.
    let y: String = s.client.result(first[1], WAIT).await.unwrap();
    assert_eq!(y, "y1");
    assert_eq!(s.status(first[0]).await, RunStatus::Queued);
    s.clock.advance(Duration::from_secs(29));
    let x: String = s.client.result(first[0], WAIT).await.unwrap();
    assert_eq!(x, "x2", "the last event of the window");
    // The next edit of `x` opens a new window.
    let next = s.send(vec![edit("x", 3)]).await[0];
    assert_ne!(next, first[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debounce_timeout_starts_a_run_while_events_keep_coming() {
    let s = Setup::new().await;
    let _worker = common::spawn_worker(s.builder()).await;
    // An edit every 50 s never leaves a quiet minute; the timeout of 100 s after
    // the first edit starts the run with the edits until then.
    let run = s.send(vec![edit("z", 1)]).await[0];
    s.clock.advance(Duration::from_secs(50));
    assert_eq!(s.send(vec![edit("z", 2)]).await[0], run);
    s.clock.advance(Duration::from_secs(50));
    let z: String = s.client.result(run, WAIT).await.unwrap();
    assert_eq!(z, "z2");
    let next = s.send(vec![edit("z", 3)]).await[0];
    assert_ne!(next, run, "the window closed at its timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debounce_with_events_all_delivers_every_event_of_the_window() {
    let s = Setup::new().await;
    let _worker = common::spawn_worker(s.builder()).await;
    let runs = s.send(vec![note(1), note(2)]).await;
    s.clock.advance(Duration::from_secs(59));
    let mut more = s.send(vec![note(3)]).await;
    // Past the first minute: the third note moved the window (no timeout caps it).
    s.clock.advance(Duration::from_secs(2));
    more.extend(s.send(vec![note(4)]).await);
    assert_eq!([runs[1], more[0], more[1]], [runs[0]; 3]);
    s.clock.advance(Duration::from_secs(60));
    let notes: Vec<u32> = s.client.result(runs[0], WAIT).await.unwrap();
    assert_eq!(notes, [1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_run_started_without_its_rules_takes_its_one_event_as_a_batch() {
    // Sent before any worker announced the function's rules: the event starts a
    // run of its own, which the handler takes as a batch of one.
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    store
        .register_functions(
            &[flow::store::FunctionInfo::new(
                "count_clicks",
                "test/grouping.click",
            )],
            flow::Now::Database,
        )
        .await
        .unwrap();
    let run = client.send(click("c", 1)).await.unwrap().runs[0].1;
    let _worker = common::spawn_worker(common::worker(&store).register::<count_clicks>()).await;
    let clicks: Vec<String> = client.result(run, WAIT).await.unwrap();
    assert_eq!(clicks, ["c1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_does_not_fit_the_batch_fails_the_run_naming_its_place() {
    let s = Setup::new().await;
    let runs = s
        .send(vec![
            click("d", 1),
            NewEvent::raw("test/grouping.click", json!({ "user": "d", "n": "two" })).unwrap(),
            click("d", 3),
        ])
        .await;
    let _worker = common::spawn_worker(s.builder()).await;
    let view = s.client.wait(runs[0], WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Failed);
    let error = view.error.unwrap_or_default();
    assert!(error.contains("[1].n"), "{error}");
}
