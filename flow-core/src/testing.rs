//! The store conformance suite: what every backend must do, checked through the
//! [`Store`] trait alone. A backend runs it with
//! `flow_core::store_conformance_tests!(async { /* a fresh, empty store */ });` in
//! one of its test files (feature `testing`); each check becomes a test of its own.
//!
//! The engine's behaviour on top of a store (steps, retries, replay, sleeps, worker
//! processes) is tested by the `flow` crate's suite, which runs on every backend too.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::json;

use crate::flow_control::Limited;
use crate::store::{
    Block, ClaimRequest, ClaimedRun, Committed, EventWait, Failure, FailureKind, FunctionInfo,
    Lease, Next, Outcome, OutgoingEvent, Park, ReadStore, Settle, StepRecord, Store, Transition,
    Wakeup,
};
use crate::{EventId, NewEvent, Now, RunId, RunStatus, RunView, StepKind, Timeouts};

fn start() -> DateTime<Utc> {
    "2026-06-01T12:00:00Z".parse().expect("a valid time")
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

async fn announce<S: Store>(store: &S, functions: &[(&str, &str)]) {
    let infos: Vec<FunctionInfo> = functions
        .iter()
        .map(|(id, trigger)| FunctionInfo::new(*id, *trigger))
        .collect();
    store
        .register_functions(&infos, Now::At(start()))
        .await
        .expect("register functions");
}

fn event(name: &str, n: i64) -> NewEvent {
    NewEvent::raw(name, json!({ "n": n })).expect("a valid name")
}

async fn claim<S: Store>(
    store: &S,
    owner: &str,
    functions: &[&str],
    max: usize,
    at: DateTime<Utc>,
) -> Vec<ClaimedRun> {
    let owner: Arc<str> = owner.into();
    let functions: Vec<String> = functions.iter().map(|f| f.to_string()).collect();
    let request = ClaimRequest {
        owner: &owner,
        functions: &functions,
        limited: Limited::none(),
        max,
        lease: Duration::from_secs(30),
    };
    store.claim(request, Now::At(at)).await.expect("claim")
}

async fn commit<S: Store>(
    store: &S,
    batch: &[(Lease, Transition)],
    at: DateTime<Utc>,
) -> Vec<Committed> {
    store
        .commit(batch, Duration::from_secs(30), Now::At(at))
        .await
        .expect("commit")
}

async fn view<S: ReadStore>(store: &S, run: RunId) -> RunView {
    store.run(run).await.expect("read").expect("the run exists")
}

fn finish(outcome: Outcome) -> Transition {
    Transition::next(Next::Finish(outcome))
}

fn step(key: &str, position: u32, at: DateTime<Utc>) -> StepRecord {
    StepRecord {
        key: key.into(),
        position,
        kind: StepKind::Run,
        output: Some(json!({ "key": key })),
        error: None,
        attempts: 1,
        started_at: at,
        finished_at: at,
        wake_at: None,
    }
}

/// One run per announced function whose trigger is the event's name; none for others.
pub async fn send_starts_one_run_per_announced_function<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/fan"), ("b", "t/fan"), ("c", "t/other")]).await;
    let receipt = store
        .send(
            vec![event("t/fan", 1), event("t/nobody", 2)],
            Now::At(start()),
        )
        .await
        .expect("send");
    assert_eq!(receipt.event_ids.len(), 2);
    assert_eq!(
        receipt.runs.len(),
        2,
        "t/fan starts a and b; t/nobody starts nothing"
    );
    assert_eq!(
        receipt.unmatched,
        ["t/nobody"],
        "the receipt says what started nothing"
    );
    for (event_id, run) in &receipt.runs {
        assert_eq!(*event_id, receipt.event_ids[0]);
        let view = store
            .run(*run)
            .await
            .expect("read")
            .expect("the run exists");
        assert_eq!(view.status, RunStatus::Queued);
        assert!(view.function_id == "a" || view.function_id == "b");
    }
}

/// Runs are listed newest first, a page at a time, by function, status, creation
/// time and event.
pub async fn runs_are_listed_newest_first_by_filter_and_page<S: Store + ReadStore>(store: S) {
    use crate::store::RunQuery;
    announce(&store, &[("a", "t/list.a"), ("b", "t/list.b")]).await;
    let a = store
        .send(
            (0..5).map(|n| event("t/list.a", n)).collect(),
            Now::At(start()),
        )
        .await
        .expect("send");
    let later = start() + chrono::TimeDelta::hours(1);
    let b = store
        .send(
            (0..3).map(|n| event("t/list.b", n)).collect(),
            Now::At(later),
        )
        .await
        .expect("send");
    assert!(
        store
            .cancel(a.runs[0].1, "listed as cancelled", Now::At(later))
            .await
            .expect("cancel")
    );
    let page = |query: RunQuery| {
        let store = store.clone();
        async move { store.runs(&query).await.expect("list runs") }
    };
    let all = RunQuery {
        limit: 3,
        ..RunQuery::default()
    };
    let mut seen = Vec::new();
    let mut query = all.clone();
    loop {
        let listed = page(query.clone()).await;
        assert!(listed.runs.len() <= 3);
        seen.extend(listed.runs.iter().map(|r| r.id));
        match listed.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let mut expected: Vec<RunId> = a.runs.iter().chain(&b.runs).map(|(_, r)| *r).collect();
    expected.sort_by_key(|r| std::cmp::Reverse(r.0));
    assert_eq!(
        seen, expected,
        "every run once, newest first, over three pages"
    );
    let count = |query: RunQuery| async move { page(query).await.runs.len() };
    let of = |function: &str| RunQuery {
        function: Some(function.to_owned()),
        limit: 100,
        ..RunQuery::default()
    };
    assert_eq!(count(of("a")).await, 5);
    assert_eq!(count(of("b")).await, 3);
    let cancelled = page(RunQuery {
        statuses: vec![RunStatus::Cancelled],
        limit: 100,
        ..RunQuery::default()
    })
    .await;
    assert_eq!(cancelled.runs.len(), 1);
    assert_eq!(cancelled.runs[0].id, a.runs[0].1);
    assert_eq!(
        cancelled.runs[0].error.as_deref(),
        Some("listed as cancelled")
    );
    let halfway = start() + chrono::TimeDelta::minutes(30);
    let since = RunQuery {
        created_from: Some(halfway),
        limit: 100,
        ..RunQuery::default()
    };
    assert_eq!(count(since).await, 3);
    let until = RunQuery {
        created_to: Some(halfway),
        limit: 100,
        ..RunQuery::default()
    };
    assert_eq!(count(until).await, 5);
    let by_event = page(RunQuery {
        event: Some(b.event_ids[1]),
        limit: 100,
        ..RunQuery::default()
    })
    .await;
    assert_eq!(by_event.runs.len(), 1);
    assert_eq!(by_event.runs[0].id, b.runs[1].1);
    assert_eq!(by_event.runs[0].function_id, "b");
    assert_eq!(by_event.runs[0].status, RunStatus::Queued);
}

/// Events are listed newest first, a page at a time, by name, with their data.
pub async fn events_are_listed_newest_first_by_name_and_page<S: Store + ReadStore>(store: S) {
    use crate::store::EventQuery;
    let sent = store
        .send(
            (0..5)
                .map(|n| event(if n % 2 == 0 { "t/ev.even" } else { "t/ev.odd" }, n))
                .chain([event("t/ev.even", 6).id("producer-6")])
                .collect(),
            Now::At(start()),
        )
        .await
        .expect("send");
    let mut seen = Vec::new();
    let mut query = EventQuery {
        limit: 4,
        ..EventQuery::default()
    };
    loop {
        let page = store.events(&query).await.expect("list events");
        assert!(page.events.len() <= 4);
        seen.extend(page.events.iter().map(|e| e.id));
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let mut expected = sent.event_ids.clone();
    expected.sort_by_key(|e| std::cmp::Reverse(e.0));
    assert_eq!(
        seen, expected,
        "every event once, newest first, over two pages"
    );
    let even = store
        .events(&EventQuery {
            name: Some("t/ev.even".into()),
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .expect("list events");
    assert_eq!(even.events.len(), 4);
    assert!(even.next.is_none());
    let newest = &even.events[0];
    assert_eq!(newest.name, "t/ev.even");
    assert_eq!(newest.producer_id.as_deref(), Some("producer-6"));
    assert_eq!(newest.data, event("t/ev.even", 6).data().clone());
    assert_eq!(newest.received_at, start());
}

/// An ended run is run again as a new run of its function with its event; a run
/// that has not ended and an unknown run are refused, saying which.
pub async fn an_ended_run_is_run_again_with_its_event<S: Store + ReadStore>(store: S) {
    announce(&store, &[("again", "t/again")]).await;
    let sent = store
        .send(vec![event("t/again", 1)], Now::At(start()))
        .await
        .expect("send");
    let run = sent.runs[0].1;
    match store.rerun(run, Now::At(start())).await {
        Err(crate::Error::NotEnded { run: r, status }) => {
            assert_eq!((r, status), (run, RunStatus::Queued));
        }
        other => panic!("a queued run is not run again: {other:?}"),
    }
    assert!(
        store
            .cancel(run, "to run it again", Now::At(start()))
            .await
            .expect("cancel")
    );
    let again = store
        .rerun(run, Now::At(start()))
        .await
        .expect("an ended run is run again");
    assert_ne!(again, run);
    let view = store
        .run(again)
        .await
        .expect("read")
        .expect("the new run exists");
    assert_eq!(view.status, RunStatus::Queued);
    assert_eq!(view.function_id, "again");
    assert_eq!(view.event_id, sent.event_ids[0]);
    let missing = RunId(uuid::Uuid::now_v7());
    assert!(matches!(
        store.rerun(missing, Now::At(start())).await,
        Err(crate::Error::RunNotFound(r)) if r == missing
    ));
}

/// A receipt lists the runs in the order of the events sent, then by function.
pub async fn receipts_list_runs_in_the_order_sent<S: Store + ReadStore>(store: S) {
    announce(&store, &[("b", "t/ordered"), ("a", "t/ordered")]).await;
    let receipt = store
        .send(
            (0..20).map(|n| event("t/ordered", n)).collect(),
            Now::At(start()),
        )
        .await
        .expect("send");
    let events: Vec<_> = receipt.runs.iter().map(|(event, _)| *event).collect();
    let expected: Vec<_> = receipt.event_ids.iter().flat_map(|id| [*id, *id]).collect();
    assert_eq!(events, expected);
    for pair in receipt.runs.chunks(2) {
        let first = view(&store, pair[0].1).await.function_id;
        let second = view(&store, pair[1].1).await.function_id;
        assert_eq!((first.as_str(), second.as_str()), ("a", "b"));
    }
}

/// A producer id starts runs once within 24 hours, across sends and within a batch.
pub async fn producer_ids_deduplicate_for_24_hours<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/dedupe")]).await;
    let first = store
        .send(
            vec![
                event("t/dedupe", 1).id("same"),
                event("t/dedupe", 1).id("same"),
            ],
            Now::At(start()),
        )
        .await
        .expect("send");
    assert_eq!((first.runs.len(), first.duplicates), (1, 1));
    assert_eq!(first.event_ids[0], first.event_ids[1]);
    let again = store
        .send(
            vec![event("t/dedupe", 1).id("same")],
            Now::At(start() + secs(86_399)),
        )
        .await
        .expect("send");
    assert_eq!((again.runs.len(), again.duplicates), (0, 1));
    assert_eq!(
        again.event_ids[0], first.event_ids[0],
        "a duplicate reports the first event"
    );
    let later = store
        .send(
            vec![event("t/dedupe", 1).id("same")],
            Now::At(start() + secs(86_400)),
        )
        .await
        .expect("send");
    assert_eq!(later.runs.len(), 1, "accepted again after 24 hours");
}

/// Claims lease due runs of the given functions once each, up to `max`.
pub async fn claims_lease_each_due_run_once<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/claim"), ("b", "t/skip")]).await;
    store
        .send(
            (0..3)
                .map(|n| event("t/claim", n))
                .chain([event("t/skip", 9)])
                .collect(),
            Now::At(start()),
        )
        .await
        .expect("send");
    let first = claim(&store, "w1", &["a"], 2, start()).await;
    assert_eq!(first.len(), 2);
    for run in &first {
        assert_eq!(
            (
                run.function_id.as_str(),
                run.lease.token,
                run.resumed,
                run.lost_count
            ),
            ("a", 1, false, 0)
        );
        assert_eq!(run.event.name, "t/claim");
    }
    let second = claim(&store, "w2", &["a"], 10, start()).await;
    assert_eq!(second.len(), 1, "a claimed run is not claimed again");
    assert!(claim(&store, "w2", &["a"], 10, start()).await.is_empty());
    // Any `max` is accepted, however large (a worker's free slots).
    assert!(
        claim(&store, "w3", &["a"], usize::MAX, start())
            .await
            .is_empty()
    );
    let view = store
        .run(first[0].lease.run_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(view.status, RunStatus::Running);
}

/// A commit claims in the same round trip: the runs that were due, whatever became
/// of the batch's transitions (one fenced out here). Whether the claim also takes
/// a run the batch itself made due (a hand-back here) is the backend's choice.
pub async fn a_commit_claims_in_the_same_round_trip<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/refill")]).await;
    store
        .send(
            (0..4).map(|n| event("t/refill", n)).collect(),
            Now::At(start()),
        )
        .await
        .expect("send");
    let mut held = claim(&store, "w", &["a"], 2, start()).await;
    let (finishing, released) = (held.remove(0), held.remove(0));
    let stale = Lease {
        token: finishing.lease.token + 7,
        ..finishing.lease.clone()
    };
    let owner: Arc<str> = "w".into();
    let functions = vec!["a".to_owned()];
    let request = ClaimRequest {
        owner: &owner,
        functions: &functions,
        limited: Limited::none(),
        max: 10,
        lease: Duration::from_secs(30),
    };
    let batch = [
        (
            finishing.lease.clone(),
            Transition::next(Next::Finish(Outcome::Completed(json!("done")))),
        ),
        (released.lease.clone(), Transition::next(Next::Release)),
        (stale, Transition::step(step("late", 0, start()))),
    ];
    let (committed, claimed) = store
        .commit_and_claim(
            &batch,
            request.clone(),
            Duration::from_secs(30),
            Now::At(start()),
        )
        .await
        .expect("commit and claim");
    assert_eq!(
        committed,
        [Committed::Written, Committed::Written, Committed::LeaseLost]
    );
    let took_back = claimed
        .iter()
        .any(|c| c.lease.run_id == released.lease.run_id);
    assert_eq!(
        claimed.len(),
        if took_back { 3 } else { 2 },
        "the runs that were due"
    );
    for run in &claimed {
        assert!(
            run.lease.run_id != finishing.lease.run_id,
            "a finished run is not claimed"
        );
        assert_eq!(run.function_id.as_str(), "a");
        assert_eq!(run.event.name, "t/refill");
        assert_eq!(
            view(&store, run.lease.run_id).await.status,
            RunStatus::Running
        );
    }
    assert_eq!(
        view(&store, finishing.lease.run_id).await.status,
        RunStatus::Completed
    );
    // The hand-back is claimable by the next claim if this one did not take it.
    let again = store
        .commit_and_claim(
            &[],
            request.clone(),
            Duration::from_secs(30),
            Now::At(start()),
        )
        .await
        .expect("claim the hand-back");
    assert_eq!(
        again.1.iter().map(|c| c.lease.run_id).collect::<Vec<_>>(),
        if took_back {
            vec![]
        } else {
            vec![released.lease.run_id]
        }
    );
    // With nothing due, a commit claims nothing.
    let empty = store
        .commit_and_claim(&[], request, Duration::from_secs(30), Now::At(start()))
        .await
        .expect("claim nothing");
    assert!(empty.0.is_empty() && empty.1.is_empty());
}

/// A checkpoint with the run's current token is kept; one with a stale token is not.
pub async fn checkpoints_are_fenced_by_the_lease_token<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/fence")]).await;
    store
        .send(vec![event("t/fence", 1)], Now::At(start()))
        .await
        .expect("send");
    let run = claim(&store, "w", &["a"], 1, start()).await.remove(0);
    let stale = Lease {
        token: run.lease.token - 1,
        ..run.lease.clone()
    };
    let written = commit(
        &store,
        &[
            (run.lease.clone(), Transition::step(step("one", 0, start()))),
            (run.lease.clone(), Transition::step(step("two", 1, start()))),
            (stale, Transition::step(step("three", 2, start()))),
        ],
        start(),
    )
    .await;
    assert_eq!(
        written,
        [Committed::Written, Committed::Written, Committed::LeaseLost]
    );
    let loaded = store.load(run.lease.run_id).await.expect("load");
    let mut keys: Vec<_> = loaded.steps.iter().map(|s| s.key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["one", "two"]);
    assert_eq!(
        loaded
            .steps
            .iter()
            .find(|s| s.key == "one")
            .expect("one")
            .output,
        Some(json!({ "key": "one" }))
    );
}

/// Events a transition carries are stored, and start their runs, in its commit:
/// only when its lease holds and its steps are new, so a commit tried again or a
/// stale worker sends nothing twice. A finishing transition sends them too.
pub async fn a_transition_sends_its_events_with_its_commit<S: Store + ReadStore>(store: S) {
    announce(&store, &[("parent", "t/parent"), ("child", "t/sent")]).await;
    store
        .send(
            vec![event("t/parent", 1), event("t/parent", 2)],
            Now::At(start()),
        )
        .await
        .expect("send");
    let runs = claim(&store, "w", &["parent"], 2, start()).await;
    let outgoing = |n: i64| OutgoingEvent {
        id: EventId(uuid::Uuid::now_v7()),
        event: event("t/sent", n),
    };
    let sending = Transition {
        events: vec![outgoing(10), outgoing(11)],
        ..Transition::step(StepRecord {
            kind: StepKind::SendEvent,
            ..step("send", 0, start())
        })
    };
    let sent: Vec<EventId> = sending.events.iter().map(|e| e.id).collect();
    let stale = Lease {
        token: runs[1].lease.token - 1,
        ..runs[1].lease.clone()
    };
    let results = commit(
        &store,
        &[
            (runs[0].lease.clone(), sending.clone()),
            (
                stale,
                Transition {
                    events: vec![outgoing(12)],
                    ..Transition::step(step("send", 0, start()))
                },
            ),
        ],
        start(),
    )
    .await;
    assert_eq!(results, [Committed::Written, Committed::LeaseLost]);
    let children = claim(&store, "w", &["child"], 10, start()).await;
    let mut started: Vec<EventId> = children.iter().map(|c| c.event.id).collect();
    started.sort();
    assert_eq!(
        started, sent,
        "each sent event starts a run; the stale one sends nothing"
    );
    assert_eq!(children[0].event.name, "t/sent");

    // The same commit tried again (its answer lost) finds its step recorded.
    let again = commit(&store, &[(runs[0].lease.clone(), sending)], start()).await;
    assert_eq!(again, [Committed::AlreadyRecorded(vec!["send".into()])]);
    let finishing = Transition {
        events: vec![outgoing(13)],
        ..finish(Outcome::Completed(json!(null)))
    };
    let last = finishing.events[0].id;
    let done = commit(&store, &[(runs[1].lease.clone(), finishing)], start()).await;
    assert_eq!(done, [Committed::Written]);
    let later = claim(&store, "w", &["child"], 10, start() + secs(1)).await;
    let started: Vec<EventId> = later.iter().map(|c| c.event.id).collect();
    assert_eq!(
        started,
        [last],
        "nothing was sent twice; the finish sent its event"
    );
}

/// A run that ends closes its open waits, however it ends: here by an
/// operator's settlement of a run that was blocked after its wait timed out.
pub async fn a_run_that_ends_closes_its_waits<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/waiting")]).await;
    store
        .send(vec![event("t/waiting", 1)], Now::At(start()))
        .await
        .expect("send");
    let run = claim(&store, "w", &["a"], 1, start()).await.remove(0);
    let wait = EventWait {
        key: "confirmation".into(),
        position: 0,
        name: "t/never.sent".into(),
        field: String::new(),
        value: None,
        lookback: Duration::ZERO,
        expires_at: start() + secs(10),
    };
    let parked = commit(
        &store,
        &[(
            run.lease.clone(),
            Transition::next(Next::Park(Park::wait(wait))),
        )],
        start(),
    )
    .await;
    assert_eq!(parked, [Committed::Written]);
    let id = run.lease.run_id;
    assert_eq!(store.load(id).await.expect("load").waits.len(), 1);
    let woken = claim(&store, "w", &["a"], 1, start() + secs(10))
        .await
        .remove(0);
    let blocked = Transition::next(Next::Block(Block {
        failure: Failure::new(FailureKind::Replay, "non-determinism at `confirmation`"),
        retry_at: start() + secs(3600),
    }));
    commit(&store, &[(woken.lease, blocked)], start() + secs(10)).await;
    let settled = store
        .settle_blocked(
            id,
            &Settle::Fail("given up".into()),
            Now::At(start() + secs(11)),
        )
        .await
        .expect("settle");
    assert!(settled);
    assert!(
        store.load(id).await.expect("load").waits.is_empty(),
        "the failed run's wait is closed"
    );
}

/// However a run ends (its worker's finish, a cancel, an operator's settlement, too
/// many lost workers), the functions triggered by flow's system events get exactly
/// one run each about it, with the run's event and how it ended; a run they start
/// sends none.
pub async fn a_run_that_ends_sends_system_events_to_their_functions<S: Store + ReadStore>(
    store: S,
) {
    use crate::system::{
        FUNCTION_CANCELLED, FUNCTION_FAILED, FUNCTION_FINISHED, FunctionCancelled, FunctionFailed,
        FunctionFinished,
    };
    announce(
        &store,
        &[
            ("job", "t/job"),
            ("on-finished", FUNCTION_FINISHED),
            ("on-failed", FUNCTION_FAILED),
            ("on-cancelled", FUNCTION_CANCELLED),
        ],
    )
    .await;
    store
        .send(
            (1..=5).map(|n| event("t/job", n)).collect(),
            Now::At(start()),
        )
        .await
        .expect("send");
    let mut runs = claim(&store, "w", &["job"], 5, start()).await;
    runs.sort_by_key(|r| r.event.data["n"].as_i64());
    let id = |n: usize| runs[n - 1].lease.run_id;
    let completed = finish(Outcome::Completed(json!({ "total": 42 })));
    let failed = finish(Outcome::Failed(
        Failure::new(FailureKind::Handler, "the card was declined").in_step("charge"),
    ));
    let blocked = Transition::next(Next::Block(Block {
        failure: Failure::new(FailureKind::Replay, "non-determinism at `x`"),
        retry_at: start() + secs(3600),
    }));
    let written = commit(
        &store,
        &[
            (runs[0].lease.clone(), completed),
            (runs[1].lease.clone(), failed),
            (runs[3].lease.clone(), blocked),
        ],
        start() + secs(1),
    )
    .await;
    assert_eq!(written, vec![Committed::Written; 3]);
    assert!(
        store
            .cancel(id(3), "the order was withdrawn", Now::At(start() + secs(2)))
            .await
            .expect("cancel")
    );
    assert!(
        store
            .settle_blocked(
                id(4),
                &Settle::Fail("given up".into()),
                Now::At(start() + secs(3))
            )
            .await
            .expect("settle")
    );
    assert_eq!(
        store
            .recover_expired(1, Now::At(start() + secs(31)))
            .await
            .expect("recover"),
        1,
        "run 5's worker is lost once, its limit"
    );

    let later = start() + secs(40);
    let finished = claim(&store, "w", &["on-finished"], 10, later).await;
    let mut seen: Vec<(RunId, RunStatus)> = finished
        .iter()
        .map(|r| {
            assert_eq!(r.event.name, FUNCTION_FINISHED);
            let e: FunctionFinished = serde_json::from_value(r.event.data.clone())
                .unwrap_or_else(|e| panic!("{e}: {}", r.event.data));
            assert_eq!(e.function_id, "job");
            assert_eq!(e.event.name, "t/job");
            let n = e.event.data["n"].as_i64().expect("the run's event data");
            assert_eq!(runs[n as usize - 1].lease.run_id, e.run_id);
            match n {
                1 => assert_eq!(e.output, Some(json!({ "total": 42 }))),
                2 => assert_eq!(
                    e.error.as_ref().map(|f| (f.kind, f.step.as_deref())),
                    Some((FailureKind::Handler, Some("charge")))
                ),
                3 => assert_eq!(e.reason.as_deref(), Some("the order was withdrawn")),
                _ => assert!(e.error.is_some() && e.output.is_none()),
            }
            (e.run_id, e.status)
        })
        .collect();
    seen.sort_by_key(|(run, _)| *run);
    let mut expected = vec![
        (id(1), RunStatus::Completed),
        (id(2), RunStatus::Failed),
        (id(3), RunStatus::Cancelled),
        (id(4), RunStatus::Failed),
        (id(5), RunStatus::Failed),
    ];
    expected.sort_by_key(|(run, _)| *run);
    assert_eq!(seen, expected, "one finished event per run that ended");

    let failures = claim(&store, "w", &["on-failed"], 10, later).await;
    let mut failed: Vec<(RunId, FailureKind)> = failures
        .iter()
        .map(|r| {
            let e: FunctionFailed = serde_json::from_value(r.event.data.clone())
                .unwrap_or_else(|e| panic!("{e}: {}", r.event.data));
            (e.run_id, e.error.kind)
        })
        .collect();
    failed.sort_by_key(|(run, _)| *run);
    let mut expected = vec![
        (id(2), FailureKind::Handler),
        (id(4), FailureKind::Replay),
        (id(5), FailureKind::Lost),
    ];
    expected.sort_by_key(|(run, _)| *run);
    assert_eq!(failed, expected);

    let cancels = claim(&store, "w", &["on-cancelled"], 10, later).await;
    assert_eq!(cancels.len(), 1);
    let e: FunctionCancelled =
        serde_json::from_value(cancels[0].event.data.clone()).expect("a cancel event");
    assert_eq!(
        (e.run_id, e.reason.as_str()),
        (id(3), "the order was withdrawn")
    );

    // The runs they started end too, and send nothing more.
    let ends: Vec<(Lease, Transition)> = finished
        .iter()
        .chain(&failures)
        .chain(&cancels)
        .map(|r| (r.lease.clone(), finish(Outcome::Completed(json!(null)))))
        .collect();
    commit(&store, &ends, later).await;
    let again = claim(
        &store,
        "w",
        &["on-finished", "on-failed", "on-cancelled"],
        10,
        later + secs(1),
    )
    .await;
    assert!(again.is_empty(), "no function triggers itself");
}

/// A parked run is claimable again only when due, by any worker, with a new token.
pub async fn parked_runs_wake_when_due<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/park")]).await;
    store
        .send(vec![event("t/park", 1)], Now::At(start()))
        .await
        .expect("send");
    let run = claim(&store, "w1", &["a"], 1, start()).await.remove(0);
    commit(
        &store,
        &[(
            run.lease.clone(),
            Transition::step(step("before", 0, start())),
        )],
        start(),
    )
    .await;
    let due = start() + secs(60);
    commit(
        &store,
        &[(
            run.lease.clone(),
            Transition::next(Next::Park(Park::sleep(due))),
        )],
        start(),
    )
    .await;
    assert_eq!(
        store
            .run(run.lease.run_id)
            .await
            .expect("read")
            .expect("exists")
            .status,
        RunStatus::Sleeping
    );
    assert_eq!(
        store
            .next_wakeup(&["a".to_string()], Limited::none())
            .await
            .expect("next"),
        Some(due)
    );
    assert!(
        claim(&store, "w2", &["a"], 1, due - secs(1))
            .await
            .is_empty(),
        "not before it is due"
    );
    let resumed = claim(&store, "w2", &["a"], 1, due).await.remove(0);
    assert_eq!((resumed.lease.token, resumed.resumed), (2, true));
    assert_eq!(
        store
            .load(resumed.lease.run_id)
            .await
            .expect("load")
            .steps
            .len(),
        1
    );
    // The first worker's lease is gone: its writes change nothing.
    let late = commit(
        &store,
        &[
            (run.lease.clone(), Transition::step(step("late", 1, due))),
            (run.lease.clone(), finish(Outcome::Completed(json!(1)))),
        ],
        due,
    )
    .await;
    assert_eq!(late, [Committed::LeaseLost, Committed::LeaseLost]);
    assert_eq!(
        view(&store, run.lease.run_id).await.status,
        RunStatus::Running
    );
}

/// Failed attempts are recorded and counted; finishing stores the outcome.
pub async fn failures_and_outcomes_are_recorded<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/finish")]).await;
    store
        .send(
            vec![event("t/finish", 1), event("t/finish", 2)],
            Now::At(start()),
        )
        .await
        .expect("send");
    let runs = claim(&store, "w", &["a"], 2, start()).await;
    let attempt = crate::store::FailedAttempt {
        key: "flaky".into(),
        attempt: 1,
        error: serde_json::to_value(crate::StepError::retriable("timed out")).expect("serializes"),
        started_at: start(),
        finished_at: start(),
        retry_at: start() + secs(1),
    };
    let failed = Transition {
        failure: Some(attempt),
        ..Transition::CONTINUE
    };
    assert_eq!(
        commit(&store, &[(runs[0].lease.clone(), failed)], start()).await,
        [Committed::Written]
    );
    assert_eq!(
        store
            .load(runs[0].lease.run_id)
            .await
            .expect("load")
            .failed_attempts,
        [("flaky".to_string(), 1)]
    );
    let broke = Failure::new(FailureKind::Step, "it broke").in_step("charge");
    commit(
        &store,
        &[
            (
                runs[0].lease.clone(),
                finish(Outcome::Completed(json!({ "ok": true }))),
            ),
            (runs[1].lease.clone(), finish(Outcome::Failed(broke))),
        ],
        start(),
    )
    .await;
    let done = view(&store, runs[0].lease.run_id).await;
    assert_eq!(
        (done.status, done.output),
        (RunStatus::Completed, Some(json!({ "ok": true })))
    );
    assert!(done.finished_at.is_some());
    assert_eq!(done.failures.len(), 1);
    assert_eq!(done.failures[0].error, "timed out");
    let failed = view(&store, runs[1].lease.run_id).await;
    assert_eq!(
        (
            failed.status,
            failed.error.as_deref(),
            failed.failure_kind,
            failed.failure_step.as_deref()
        ),
        (
            RunStatus::Failed,
            Some("it broke"),
            Some(FailureKind::Step),
            Some("charge")
        )
    );
    assert_eq!(
        commit(
            &store,
            &[(
                runs[0].lease.clone(),
                finish(Outcome::Failed(Failure::new(FailureKind::Handler, "again")))
            )],
            start()
        )
        .await,
        [Committed::LeaseLost],
        "a finished run takes no more writes"
    );
}

/// Renewal extends only the owner's leases; expired ones are recovered, and a run
/// lost too often fails naming the step it was in.
pub async fn leases_are_renewed_recovered_and_given_up<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/lease")]).await;
    store
        .send(
            vec![event("t/lease", 1), event("t/lease", 2)],
            Now::At(start()),
        )
        .await
        .expect("send");
    let mine = claim(&store, "me", &["a"], 1, start()).await.remove(0);
    let theirs = claim(&store, "them", &["a"], 1, start()).await.remove(0);
    let renewed = store
        .renew(
            std::slice::from_ref(&mine.lease),
            Duration::from_secs(300),
            Now::At(start() + secs(20)),
        )
        .await
        .expect("renew");
    assert_eq!(renewed, [mine.lease.run_id]);
    // Their lease (30 s) expires; mine (renewed to 320 s) does not.
    assert_eq!(
        store
            .recover_expired(2, Now::At(start() + secs(31)))
            .await
            .expect("recover"),
        1
    );
    let lost = view(&store, theirs.lease.run_id).await;
    assert_eq!(lost.status, RunStatus::Queued);
    assert_eq!(
        lost.last_lost,
        Some(crate::LostLease {
            worker: "them".into(),
            at: start() + secs(31),
            step: None,
            after_step: None,
        }),
        "the run shows which worker lost it, and when"
    );
    assert_eq!(
        store
            .run(mine.lease.run_id)
            .await
            .expect("read")
            .expect("exists")
            .status,
        RunStatus::Running
    );
    let again = claim(&store, "them", &["a"], 1, start() + secs(31))
        .await
        .remove(0);
    assert_eq!(again.lost_count, 1);
    let mark = Transition {
        executing: Some("charge-card".into()),
        ..Transition::CONTINUE
    };
    commit(&store, &[(again.lease.clone(), mark)], start() + secs(31)).await;
    assert_eq!(
        store
            .recover_expired(2, Now::At(start() + secs(62)))
            .await
            .expect("recover"),
        1
    );
    let given_up = store
        .run(theirs.lease.run_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(given_up.status, RunStatus::Failed);
    let error = given_up.error.unwrap_or_default();
    assert!(
        error.contains("lost 2 times") && error.contains("`charge-card`"),
        "{error}"
    );
    assert_eq!(
        (given_up.failure_kind, given_up.failure_step.as_deref()),
        (Some(FailureKind::Lost), Some("charge-card"))
    );
    assert_eq!(
        given_up.last_lost,
        Some(crate::LostLease {
            worker: "them".into(),
            at: start() + secs(62),
            step: Some("charge-card".into()),
            after_step: None,
        })
    );
}

/// Sends and releases announce "now"; parks announce their due time, unless the
/// worker said not to ([`Transition::announce_wake`]).
pub async fn wakeups_announce_new_work<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/wake")]).await;
    let mut wakeups = store.wakeups().await.expect("listen");
    // Notifications take effect once the stream exists; give a server a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    store
        .send(
            vec![event("t/wake", 1), event("t/wake", 2)],
            Now::At(start()),
        )
        .await
        .expect("send");
    let first = tokio::time::timeout(Duration::from_secs(10), wakeups.next())
        .await
        .expect("a wake-up");
    assert_eq!(first, Some(Wakeup::Now));
    let mut runs = claim(&store, "w", &["a"], 2, start()).await;
    let (quiet, loud) = (runs.remove(0), runs.remove(0));
    // Parked first, but not to be announced: the next wake-up is the other park's.
    let unannounced = Transition {
        announce_wake: false,
        ..Transition::next(Next::Park(Park::retry(start() + secs(1))))
    };
    commit(&store, &[(quiet.lease.clone(), unannounced)], start()).await;
    let due = start() + secs(5);
    commit(
        &store,
        &[(
            loud.lease.clone(),
            Transition::next(Next::Park(Park::retry(due))),
        )],
        start(),
    )
    .await;
    let parked = tokio::time::timeout(Duration::from_secs(10), wakeups.next())
        .await
        .expect("a wake-up");
    assert_eq!(parked, Some(Wakeup::At(due)));
}

/// `timeouts`: a run not started by its deadline is never claimed and is
/// cancelled by the sweep, naming its start timeout; a run claimed in time
/// trades its start deadline for one to finish by, counted from its start; the
/// earliest deadline is a wake-up time, whatever function the run belongs to.
pub async fn runs_past_their_timeouts_are_cancelled_not_claimed<S: Store + ReadStore>(store: S) {
    let mut info = FunctionInfo::new("a", "t/timeouts");
    info.timeouts = Timeouts {
        start: Some(Duration::from_secs(20)),
        finish: Some(Duration::from_secs(600)),
    };
    store
        .register_functions(&[info], Now::At(start()))
        .await
        .expect("register functions");
    let send = async |at| {
        let receipt = store
            .send(vec![event("t/timeouts", 1)], Now::At(at))
            .await
            .expect("send");
        receipt.runs[0].1
    };
    let (in_time, late) = (send(start()).await, send(start() + secs(1)).await);
    let claimed = claim(&store, "w", &["a"], 1, start() + secs(10)).await;
    assert_eq!(claimed[0].lease.run_id, in_time);
    assert_eq!(
        store
            .next_wakeup(&["other".into()], Limited::none())
            .await
            .expect("next wake-up"),
        Some(start() + secs(21)),
        "the late run's deadline to start by"
    );
    assert!(
        claim(&store, "w", &["a"], 10, start() + secs(25))
            .await
            .is_empty(),
        "a run past its deadline to start by is not claimed"
    );
    assert_eq!(
        store
            .cancel_timed_out(Now::At(start() + secs(25)))
            .await
            .expect("sweep"),
        1
    );
    let view_late = view(&store, late).await;
    assert_eq!(view_late.status, RunStatus::Cancelled);
    assert_eq!(
        view_late.error.as_deref(),
        Some("did not start within 20s of its creation (timeouts: start)")
    );
    assert_eq!(view_late.finished_at, Some(start() + secs(25)));
    // The run claimed in time has ten minutes from its start to finish.
    let before = Now::At(start() + secs(10 + 599));
    assert_eq!(store.cancel_timed_out(before).await.expect("sweep"), 0);
    assert_eq!(view(&store, in_time).await.status, RunStatus::Running);
    let after = Now::At(start() + secs(10 + 600));
    assert_eq!(store.cancel_timed_out(after).await.expect("sweep"), 1);
    let view_in_time = view(&store, in_time).await;
    assert_eq!(view_in_time.status, RunStatus::Cancelled);
    assert_eq!(
        view_in_time.error.as_deref(),
        Some("did not finish within 10m of its start (timeouts: finish)")
    );
    let late_write = Transition::step(step("one", 0, start() + secs(611)));
    assert_eq!(
        commit(
            &store,
            &[(claimed[0].lease.clone(), late_write)],
            start() + secs(611)
        )
        .await,
        vec![Committed::LeaseLost],
        "the cancelled run's worker is fenced out"
    );
}

/// A cancel ends a run that has not ended, whatever it does: a queued one is never
/// claimed, a running one's holder is fenced out of its next write and renewal,
/// a watcher is told; an ended or unknown run is left alone.
pub async fn runs_are_cancelled_whatever_they_do<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/cancel")]).await;
    let receipt = store
        .send(
            vec![
                event("t/cancel", 1),
                event("t/cancel", 2),
                event("t/cancel", 3),
            ],
            Now::At(start()),
        )
        .await
        .expect("send");
    let mut held = claim(&store, "w", &["a"], 2, start()).await;
    let (running, finished) = (held.remove(0), held.remove(0));
    let queued = receipt
        .runs
        .iter()
        .map(|(_, run)| *run)
        .find(|run| *run != running.lease.run_id && *run != finished.lease.run_id)
        .expect("a run left queued");
    commit(
        &store,
        &[(finished.lease.clone(), finish(Outcome::Completed(json!(1))))],
        start(),
    )
    .await;
    let mut watch = store.watch_finish(queued).await.expect("watch");
    let at = Now::At(start() + secs(1));
    assert!(
        store
            .cancel(queued, "cancelled: by hand", at)
            .await
            .expect("cancel")
    );
    assert!(
        store
            .cancel(running.lease.run_id, "cancelled: by hand", at)
            .await
            .expect("cancel")
    );
    if watch.announces() {
        tokio::time::timeout(Duration::from_secs(10), watch.announced())
            .await
            .expect("the cancel is announced to the run's watcher");
    }
    for run in [queued, running.lease.run_id] {
        let view = view(&store, run).await;
        assert_eq!(view.status, RunStatus::Cancelled);
        assert_eq!(view.error.as_deref(), Some("cancelled: by hand"));
        assert_eq!(view.finished_at, Some(start() + secs(1)));
    }
    assert!(
        claim(&store, "w", &["a"], 10, start() + secs(2))
            .await
            .is_empty(),
        "a cancelled run is never claimed"
    );
    let late = Transition::step(step("one", 0, start() + secs(2)));
    assert_eq!(
        commit(&store, &[(running.lease.clone(), late)], start() + secs(2)).await,
        [Committed::LeaseLost],
        "the cancelled run's worker is fenced out"
    );
    let renewed = store
        .renew(
            std::slice::from_ref(&running.lease),
            Duration::from_secs(30),
            Now::At(start() + secs(2)),
        )
        .await
        .expect("renew");
    assert!(renewed.is_empty(), "and its lease is not renewed");
    assert!(view(&store, running.lease.run_id).await.steps.is_empty());
    // Ended, cancelled again, or unknown: nothing changes.
    assert!(
        !store
            .cancel(finished.lease.run_id, "cancelled: late", at)
            .await
            .expect("cancel")
    );
    assert_eq!(
        view(&store, finished.lease.run_id).await.status,
        RunStatus::Completed
    );
    assert!(
        !store
            .cancel(queued, "cancelled: twice", at)
            .await
            .expect("cancel")
    );
    assert_eq!(
        view(&store, queued).await.error.as_deref(),
        Some("cancelled: by hand")
    );
    assert!(
        !store
            .cancel(RunId(uuid::Uuid::now_v7()), "cancelled", at)
            .await
            .expect("cancel")
    );
}

/// A bulk cancel ends the runs of one function created in a time range (its start
/// included, its end not) that have not ended, and no others.
pub async fn runs_of_a_function_are_cancelled_by_creation_time<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/bulk.a"), ("b", "t/bulk.b")]).await;
    let mut runs = Vec::new();
    for (i, name) in ["t/bulk.a", "t/bulk.a", "t/bulk.a", "t/bulk.a", "t/bulk.b"]
        .into_iter()
        .enumerate()
    {
        let receipt = store
            .send(
                vec![event(name, i as i64)],
                Now::At(start() + secs(10 * i as i64)),
            )
            .await
            .expect("send");
        runs.push(receipt.runs[0].1);
    }
    // Created at 0, 10, 20 and 30 s (function a) and 40 s (function b); the one at
    // 20 s has ended.
    let mut ended = claim(&store, "w", &["a"], 3, start() + secs(50)).await;
    let done = ended
        .iter()
        .position(|c| c.lease.run_id == runs[2])
        .expect("the run created at 20 s is claimed");
    let done = ended.remove(done);
    commit(
        &store,
        &[(done.lease, finish(Outcome::Completed(json!(2))))],
        start() + secs(50),
    )
    .await;
    let cancelled = store
        .cancel_runs(
            "a",
            start() + secs(10)..start() + secs(30),
            "cancelled: in bulk",
            Now::At(start() + secs(60)),
        )
        .await
        .expect("cancel");
    assert_eq!(cancelled, 1, "only the run created at 10 s had not ended");
    let statuses = futures::future::join_all(runs.iter().map(|run| view(&store, *run))).await;
    let statuses: Vec<RunStatus> = statuses.into_iter().map(|v| v.status).collect();
    assert_eq!(statuses[1], RunStatus::Cancelled);
    assert_eq!(
        statuses[2],
        RunStatus::Completed,
        "an ended run keeps its end"
    );
    assert!(
        ![statuses[0], statuses[3], statuses[4]].contains(&RunStatus::Cancelled),
        "outside the range or of another function: {statuses:?}"
    );
}

/// A write that goes on extends the lease only when asked
/// ([`Transition::extend_lease`]); otherwise the lease keeps its expiry, which
/// [`Store::next_wakeup`] reports.
pub async fn a_commit_extends_the_lease_only_when_asked<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/extend")]).await;
    store
        .send(vec![event("t/extend", 1)], Now::At(start()))
        .await
        .expect("send");
    let run = claim(&store, "w", &["a"], 1, start()).await.remove(0);
    let functions = ["a".to_string()];
    let expiry = async || {
        store
            .next_wakeup(&functions, Limited::none())
            .await
            .expect("next wake-up")
    };
    assert_eq!(
        expiry().await,
        Some(start() + secs(30)),
        "the claim's lease"
    );
    let kept = Transition {
        extend_lease: false,
        ..Transition::step(step("one", 0, start() + secs(10)))
    };
    assert_eq!(
        commit(&store, &[(run.lease.clone(), kept)], start() + secs(10)).await,
        [Committed::Written]
    );
    assert_eq!(expiry().await, Some(start() + secs(30)), "left alone");
    let extended = Transition::step(step("two", 1, start() + secs(20)));
    commit(&store, &[(run.lease.clone(), extended)], start() + secs(20)).await;
    assert_eq!(expiry().await, Some(start() + secs(50)), "extended by 30 s");
    let recorded = view(&store, run.lease.run_id).await;
    assert_eq!(recorded.steps.len(), 2, "both checkpoints are written");
}

/// One commit carries checkpoints, failed attempts, parks, hand-backs and finishes
/// of several runs; a transition whose lease is stale changes nothing and does not
/// stop the others. A run's last checkpoint and its finish share one transition.
pub async fn one_commit_mixes_transitions_of_many_runs<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/mix")]).await;
    store
        .send(
            (0..6).map(|n| event("t/mix", n)).collect(),
            Now::At(start()),
        )
        .await
        .expect("send");
    let runs = claim(&store, "w", &["a"], 6, start()).await;
    assert_eq!(runs.len(), 6);
    let lease = |i: usize| runs[i].lease.clone();
    let stale = Lease {
        token: runs[5].lease.token + 1,
        ..lease(5)
    };
    let due = start() + secs(60);
    let attempt = crate::store::FailedAttempt {
        key: "flaky".into(),
        attempt: 1,
        error: json!({ "message": "503", "kind": "retriable" }),
        started_at: start(),
        finished_at: start(),
        retry_at: due,
    };
    let batch = vec![
        // Goes on with two steps.
        (
            lease(0),
            Transition {
                steps: vec![step("one", 0, start()), step("two", 1, start())],
                ..Transition::CONTINUE
            },
        ),
        // Sleeps, with the sleep's checkpoint.
        (
            lease(1),
            Transition {
                steps: vec![StepRecord {
                    kind: StepKind::Sleep,
                    output: None,
                    wake_at: Some(due),
                    ..step("nap", 0, start())
                }],
                ..Transition::next(Next::Park(Park::sleep(due)))
            },
        ),
        // Its last step and its finish, together.
        (
            lease(2),
            Transition {
                steps: vec![step("last", 0, start())],
                ..finish(Outcome::Completed(json!("done")))
            },
        ),
        // A failed attempt, backing off.
        (
            lease(3),
            Transition {
                failure: Some(attempt),
                ..Transition::next(Next::Park(Park::retry(due)))
            },
        ),
        // Handed back.
        (lease(4), Transition::next(Next::Release)),
        // Fenced out: nothing of it is written.
        (
            stale,
            Transition {
                steps: vec![step("ghost", 0, start())],
                ..finish(Outcome::Completed(json!("ghost")))
            },
        ),
    ];
    let results = commit(&store, &batch, start()).await;
    assert_eq!(
        results,
        [
            Committed::Written,
            Committed::Written,
            Committed::Written,
            Committed::Written,
            Committed::Written,
            Committed::LeaseLost
        ]
    );
    let status_and_steps = async |i: usize| {
        let v = view(&store, runs[i].lease.run_id).await;
        let keys: Vec<String> = v.steps.iter().map(|s| s.key.clone()).collect();
        (v.status, keys)
    };
    assert_eq!(
        status_and_steps(0).await,
        (RunStatus::Running, vec!["one".into(), "two".into()])
    );
    assert_eq!(
        status_and_steps(1).await,
        (RunStatus::Sleeping, vec!["nap".into()])
    );
    assert_eq!(
        view(&store, runs[1].lease.run_id).await.steps[0].wake_at,
        Some(due),
        "a sleep shows when it ends"
    );
    assert_eq!(
        status_and_steps(2).await,
        (RunStatus::Completed, vec!["last".into()])
    );
    assert_eq!(
        view(&store, runs[2].lease.run_id).await.output,
        Some(json!("done"))
    );
    let backing_off = view(&store, runs[3].lease.run_id).await;
    assert_eq!(
        (backing_off.status, backing_off.failures.len()),
        (RunStatus::Queued, 1)
    );
    assert_eq!(status_and_steps(4).await, (RunStatus::Queued, vec![]));
    assert_eq!(
        status_and_steps(5).await,
        (RunStatus::Running, vec![]),
        "the fenced-out transition wrote nothing"
    );
    // The hand-back is claimable at once; the parks only when due.
    let again = claim(&store, "w2", &["a"], 6, start()).await;
    assert_eq!(
        again.iter().map(|r| r.lease.run_id).collect::<Vec<_>>(),
        [runs[4].lease.run_id]
    );
    assert_eq!(claim(&store, "w2", &["a"], 6, due).await.len(), 2);
}

/// Several transitions of one run in one batch apply in order: a checkpoint and
/// the finish that follows it both hold.
pub async fn transitions_of_one_run_in_one_batch_apply_in_order<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/order")]).await;
    store
        .send(vec![event("t/order", 1)], Now::At(start()))
        .await
        .expect("send");
    let run = claim(&store, "w", &["a"], 1, start()).await.remove(0);
    let results = commit(
        &store,
        &[
            (run.lease.clone(), Transition::step(step("one", 0, start()))),
            (run.lease.clone(), Transition::step(step("two", 1, start()))),
            (run.lease.clone(), finish(Outcome::Completed(json!(2)))),
        ],
        start(),
    )
    .await;
    assert_eq!(
        results,
        [Committed::Written, Committed::Written, Committed::Written]
    );
    let done = view(&store, run.lease.run_id).await;
    assert_eq!((done.status, done.steps.len()), (RunStatus::Completed, 2));
    assert_eq!(done.output, Some(json!(2)));
}

/// Writing a step key that is already recorded keeps the first record and says so;
/// in a shared batch it does not disturb the other runs' writes.
pub async fn a_recorded_key_keeps_its_first_record<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/twice")]).await;
    store
        .send(
            vec![event("t/twice", 1), event("t/twice", 2)],
            Now::At(start()),
        )
        .await
        .expect("send");
    let runs = claim(&store, "w", &["a"], 2, start()).await;
    let first = step("charge", 0, start());
    let second = StepRecord {
        output: Some(json!("second")),
        ..first.clone()
    };
    commit(
        &store,
        &[(runs[0].lease.clone(), Transition::step(first.clone()))],
        start(),
    )
    .await;
    let results = commit(
        &store,
        &[
            (runs[0].lease.clone(), Transition::step(second)),
            (
                runs[1].lease.clone(),
                Transition::step(step("other", 0, start())),
            ),
        ],
        start(),
    )
    .await;
    assert_eq!(
        results,
        [
            Committed::AlreadyRecorded(vec!["charge".into()]),
            Committed::Written
        ]
    );
    let loaded = store.load(runs[0].lease.run_id).await.expect("load");
    assert_eq!(loaded.steps.len(), 1);
    assert_eq!(
        loaded.steps[0].output, first.output,
        "the first record stands"
    );
    assert_eq!(
        store
            .load(runs[1].lease.run_id)
            .await
            .expect("load")
            .steps
            .len(),
        1
    );
}

/// Claimers racing for the same runs never get one run twice, and between them
/// get every run.
pub async fn parallel_claimers_never_share_a_run<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/race")]).await;
    store
        .send(
            (0..120).map(|n| event("t/race", n)).collect(),
            Now::At(start()),
        )
        .await
        .expect("send");
    let claimers = (0..4).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = claim(&store, &format!("w{i}"), &["a"], 7, start()).await;
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|r| r.lease.run_id));
            }
        })
    });
    let mut all = Vec::new();
    for claimer in claimers.collect::<Vec<_>>() {
        all.extend(claimer.await.expect("a claimer"));
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), total, "a run was handed to two claimers");
    assert_eq!(total, 120, "every run was claimed");
}

/// Renewal extends exactly the leases given, and only while they are current and
/// unexpired.
pub async fn renewal_extends_exactly_the_leases_given<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/renew")]).await;
    store
        .send(
            (0..3).map(|n| event("t/renew", n)).collect(),
            Now::At(start()),
        )
        .await
        .expect("send");
    let runs = claim(&store, "me", &["a"], 3, start()).await;
    let stale = Lease {
        token: runs[1].lease.token - 1,
        ..runs[1].lease.clone()
    };
    commit(
        &store,
        &[(
            runs[1].lease.clone(),
            Transition::step(step("fetched", 0, start())),
        )],
        start(),
    )
    .await;
    let renewed = store
        .renew(
            &[runs[0].lease.clone(), stale],
            Duration::from_secs(30),
            Now::At(start() + secs(10)),
        )
        .await
        .expect("renew");
    assert_eq!(
        renewed,
        [runs[0].lease.run_id],
        "only the current lease given"
    );
    // The third run's lease (30 s) has expired: it is not revived.
    let late = store
        .renew(
            &[runs[0].lease.clone(), runs[2].lease.clone()],
            Duration::from_secs(30),
            Now::At(start() + secs(31)),
        )
        .await
        .expect("renew");
    assert_eq!(late, [runs[0].lease.run_id]);
    assert_eq!(
        store
            .recover_expired(10, Now::At(start() + secs(31)))
            .await
            .expect("recover"),
        2,
        "the runs whose leases were not renewed are recovered"
    );
    let lost = view(&store, runs[1].lease.run_id)
        .await
        .last_lost
        .expect("lost");
    assert_eq!(
        (lost.worker.as_str(), lost.after_step.as_deref()),
        ("me", Some("fetched")),
        "the run shows the last step it had checkpointed"
    );
}

/// A claimed run whose stored row does not read (`corrupt` damages the data of the
/// event it is given, in the backend's own way) fails, naming what does not read;
/// the other runs of the claim are handed over, and the bad one does not come back.
/// Not in `store_conformance_tests!`: each backend calls it with its corruption.
pub async fn a_run_whose_row_does_not_read_fails_alone<S, F, Fut>(store: S, corrupt: F)
where
    S: Store + ReadStore,
    F: FnOnce(S, crate::EventId) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    announce(&store, &[("a", "t/bad")]).await;
    let receipt = store
        .send(
            (0..3).map(|n| event("t/bad", n)).collect(),
            Now::At(start()),
        )
        .await
        .expect("send");
    corrupt(store.clone(), receipt.event_ids[1]).await;
    let claimed = claim(&store, "w", &["a"], 10, start()).await;
    let bad = receipt.runs[1].1;
    let mut ids: Vec<RunId> = claimed.iter().map(|r| r.lease.run_id).collect();
    ids.sort();
    let mut expected = vec![receipt.runs[0].1, receipt.runs[2].1];
    expected.sort();
    assert_eq!(ids, expected, "the readable runs are handed over");
    let failed = view(&store, bad).await;
    assert_eq!(
        (failed.status, failed.failure_kind),
        (RunStatus::Failed, Some(FailureKind::Storage))
    );
    let error = failed.error.unwrap_or_default();
    assert!(
        error.contains("data"),
        "the message names the column: {error}"
    );
    assert!(claim(&store, "w", &["a"], 10, start()).await.is_empty());
}

/// A finish committed after a watch was made is announced to it, whether the
/// run ends in a batch with other runs' transitions or alone, completed or
/// failed; a park is not announced.
pub async fn finishes_are_announced_to_watches<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/watch")]).await;
    store
        .send(
            vec![event("t/watch", 1), event("t/watch", 2)],
            Now::At(start()),
        )
        .await
        .expect("send");
    let mut held = claim(&store, "w", &["a"], 2, start()).await;
    let (completing, failing) = (held.remove(0), held.remove(0));
    let mut completed = store
        .watch_finish(completing.lease.run_id)
        .await
        .expect("watch");
    let mut failed = store
        .watch_finish(failing.lease.run_id)
        .await
        .expect("watch");
    // Both backends announce finishes (the default of `ReadStore` does not).
    assert!(completed.announces() && failed.announces());
    let park = Park::sleep(start() + secs(1));
    let parked = commit(
        &store,
        &[
            (
                completing.lease.clone(),
                finish(Outcome::Completed(json!("done"))),
            ),
            (failing.lease.clone(), Transition::next(Next::Park(park))),
        ],
        start(),
    )
    .await;
    assert_eq!(parked, [Committed::Written, Committed::Written]);
    tokio::time::timeout(Duration::from_secs(10), completed.announced())
        .await
        .expect("the completed run's finish is announced");
    // The commit's announcement has arrived whole: the parked run is not in it.
    assert!(
        futures::FutureExt::now_or_never(failed.announced()).is_none(),
        "a park is not announced as a finish"
    );

    let again = claim(&store, "w", &["a"], 1, start() + secs(1)).await;
    assert_eq!(again[0].lease.run_id, failing.lease.run_id);
    let failure = Failure::new(FailureKind::Step, "it broke");
    let ended = commit(
        &store,
        &[(again[0].lease.clone(), finish(Outcome::Failed(failure)))],
        start() + secs(1),
    )
    .await;
    assert_eq!(ended, [Committed::Written]);
    tokio::time::timeout(Duration::from_secs(10), failed.announced())
        .await
        .expect("the failed run's finish is announced");
    assert_eq!(
        view(&store, failing.lease.run_id).await.status,
        RunStatus::Failed
    );
}

/// Run ids are UUIDs of version 7, ordered by when the run was created (to the
/// millisecond), so new runs' index entries stay together.
pub async fn run_ids_are_ordered_by_creation<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/ordered-ids"), ("b", "t/ordered-ids")]).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let receipt = store
            .send(vec![event("t/ordered-ids", n)], Now::At(start()))
            .await
            .expect("send");
        ids.push(
            receipt
                .runs
                .iter()
                .map(|(_, run)| run.0)
                .collect::<Vec<_>>(),
        );
        // The next send is in a later millisecond.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    for batch in &ids {
        assert_eq!(batch.len(), 2);
        for id in batch {
            assert_eq!(id.get_version_num(), 7, "{id}");
        }
    }
    for pair in ids.windows(2) {
        let earlier = pair[0].iter().max().expect("two runs");
        let later = pair[1].iter().min().expect("two runs");
        assert!(earlier < later, "{earlier} was created before {later}");
    }
}

/// A blocked run shows why, is claimable again at its retry time (counting the
/// blocks in a row) or at once when its function is announced, keeps the largest
/// step count it was given, and can be settled by an operator only while blocked.
pub async fn blocked_runs_are_held_retried_and_settled<S: Store + ReadStore>(store: S) {
    announce(&store, &[("a", "t/blocked")]).await;
    let receipt = store
        .send(
            vec![event("t/blocked", 1), event("t/blocked", 2)],
            Now::At(start()),
        )
        .await
        .expect("send");
    let run = claim(&store, "w", &["a"], 1, start()).await.remove(0);
    assert_eq!((run.blocked_count, run.step_count), (0, 0));
    let recorded = Transition {
        step_count: Some(2),
        ..Transition {
            steps: vec![step("one", 0, start()), step("two", 1, start())],
            ..Transition::CONTINUE
        }
    };
    let undercount = Transition {
        step_count: Some(1),
        ..Transition::CONTINUE
    };
    let block = |at| {
        Transition::next(Next::Block(Block {
            failure: Failure::new(FailureKind::Replay, "non-determinism: `x` and `y`").in_step("x"),
            retry_at: at,
        }))
    };
    let written = commit(
        &store,
        &[
            (run.lease.clone(), recorded),
            (run.lease.clone(), undercount),
            (run.lease.clone(), block(start() + secs(60))),
        ],
        start(),
    )
    .await;
    assert_eq!(
        written,
        [Committed::Written, Committed::Written, Committed::Written]
    );
    let held = view(&store, run.lease.run_id).await;
    assert_eq!(held.status, RunStatus::Blocked);
    assert_eq!(
        (held.failure_kind, held.failure_step.as_deref()),
        (Some(FailureKind::Replay), Some("x"))
    );
    assert!(held.error.unwrap_or_default().contains("non-determinism"));
    assert_eq!(held.finished_at, None);
    assert!(
        claim(&store, "w", &["a"], 1, start() + secs(59))
            .await
            .iter()
            .all(|c| c.lease.run_id != run.lease.run_id),
        "not before its retry time"
    );
    let again = claim(&store, "w", &["a"], 2, start() + secs(60))
        .await
        .into_iter()
        .find(|c| c.lease.run_id == run.lease.run_id)
        .expect("claimed at its retry time");
    assert_eq!((again.blocked_count, again.step_count), (1, 2));
    commit(
        &store,
        &[(again.lease.clone(), block(start() + secs(3600)))],
        start(),
    )
    .await;
    // An announce makes it due at once.
    store
        .register_functions(
            &[FunctionInfo::new("a", "t/blocked")],
            Now::At(start() + secs(61)),
        )
        .await
        .expect("announce");
    let third = claim(&store, "w", &["a"], 1, start() + secs(61))
        .await
        .remove(0);
    assert_eq!(
        (third.lease.run_id, third.blocked_count),
        (run.lease.run_id, 2)
    );
    commit(
        &store,
        &[(third.lease.clone(), block(start() + secs(3600)))],
        start(),
    )
    .await;

    let fail = Settle::Fail("refunded".into());
    assert!(
        store
            .settle_blocked(run.lease.run_id, &fail, Now::At(start() + secs(62)))
            .await
            .expect("settle")
    );
    let settled = view(&store, run.lease.run_id).await;
    assert_eq!(settled.status, RunStatus::Failed);
    assert_eq!(settled.finished_at, Some(start() + secs(62)));
    let error = settled.error.unwrap_or_default();
    assert!(
        error.contains("refunded") && error.contains("(blocked by: non-determinism"),
        "{error}"
    );
    assert!(
        !store
            .settle_blocked(run.lease.run_id, &fail, Now::At(start() + secs(63)))
            .await
            .expect("settle"),
        "a run that is not blocked is not settled"
    );
    let other = receipt.runs[1].1;
    let before = view(&store, other).await.status;
    assert!(
        !store
            .settle_blocked(other, &Settle::Cancel("no".into()), Now::At(start()))
            .await
            .expect("settle"),
        "a run that was never blocked is not settled"
    );
    assert_eq!(view(&store, other).await.status, before);
}

/// [`Now::Database`] compares against the database's own clock, which reads
/// close to the test machine's (the database is local in tests): a run due now is
/// claimed, one due in an hour is not, and a fresh lease is neither renewed past
/// nor recovered early.
pub async fn the_database_clock_rules_when_asked<S: Store + ReadStore>(store: S) {
    let database = store
        .database_time()
        .await
        .expect("read the database's clock");
    let drift = (database - Utc::now()).abs();
    assert!(
        drift < secs(60),
        "the database's clock is {drift} off this machine's"
    );
    announce(&store, &[("a", "t/db-clock")]).await;
    let receipt = store
        .send(
            vec![event("t/db-clock", 1), event("t/db-clock", 2)],
            Now::Database,
        )
        .await
        .expect("send");
    let owner: Arc<str> = "w".into();
    let functions = vec!["a".to_owned()];
    let request = || ClaimRequest {
        owner: &owner,
        functions: &functions,
        limited: Limited::none(),
        max: 1,
        lease: Duration::from_secs(30),
    };
    let first = store
        .claim(request(), Now::Database)
        .await
        .expect("claim")
        .remove(0);
    let second = store
        .claim(request(), Now::Database)
        .await
        .expect("claim")
        .remove(0);
    assert!(view(&store, first.lease.run_id).await.created_at <= Utc::now() + secs(60));
    let park = Park::sleep(Utc::now() + chrono::Duration::hours(1));
    let results = store
        .commit(
            &[(second.lease.clone(), Transition::next(Next::Park(park)))],
            Duration::from_secs(30),
            Now::Database,
        )
        .await
        .expect("commit");
    assert_eq!(results, [Committed::Written]);
    assert!(
        store
            .claim(request(), Now::Database)
            .await
            .expect("claim")
            .is_empty(),
        "a run due in an hour is not due by the database's clock"
    );
    assert_eq!(
        store
            .recover_expired(1, Now::Database)
            .await
            .expect("recover"),
        0,
        "a lease taken just now has not expired by the database's clock"
    );
    let renewed = store
        .renew(
            std::slice::from_ref(&first.lease),
            Duration::from_secs(30),
            Now::Database,
        )
        .await
        .expect("renew");
    assert_eq!(renewed, [first.lease.run_id]);
    // By a clock a minute ahead the same lease has expired.
    assert_eq!(
        store
            .recover_expired(3, Now::At(Utc::now() + secs(60)))
            .await
            .expect("recover"),
        1
    );
    assert_eq!(receipt.runs.len(), 2);
}

/// One `#[tokio::test]` per conformance check, each on a fresh store from `$make`
/// (an expression that evaluates to a future of the store).
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@each $make;
            send_starts_one_run_per_announced_function,
            receipts_list_runs_in_the_order_sent,
            producer_ids_deduplicate_for_24_hours,
            claims_lease_each_due_run_once,
            a_commit_claims_in_the_same_round_trip,
            checkpoints_are_fenced_by_the_lease_token,
            a_transition_sends_its_events_with_its_commit,
            a_run_that_ends_closes_its_waits,
            a_run_that_ends_sends_system_events_to_their_functions,
            parked_runs_wake_when_due,
            failures_and_outcomes_are_recorded,
            leases_are_renewed_recovered_and_given_up,
            wakeups_announce_new_work,
            a_commit_extends_the_lease_only_when_asked,
            runs_are_cancelled_whatever_they_do,
            runs_past_their_timeouts_are_cancelled_not_claimed,
            runs_of_a_function_are_cancelled_by_creation_time,
            one_commit_mixes_transitions_of_many_runs,
            a_recorded_key_keeps_its_first_record,
            transitions_of_one_run_in_one_batch_apply_in_order,
            parallel_claimers_never_share_a_run,
            renewal_extends_exactly_the_leases_given,
            the_database_clock_rules_when_asked,
            blocked_runs_are_held_retried_and_settled,
            run_ids_are_ordered_by_creation,
            finishes_are_announced_to_watches,
            runs_are_listed_newest_first_by_filter_and_page,
            events_are_listed_newest_first_by_name_and_page,
            an_ended_run_is_run_again_with_its_event,
        );
    };
    (@each $make:expr; $($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let store = $make.await;
            $crate::testing::$check(store).await;
        }
    )*};
}
