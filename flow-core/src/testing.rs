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

use crate::store::{
    ClaimRequest, ClaimedRun, FunctionInfo, Lease, Outcome, Park, StepRecord, Store, Wakeup,
};
use crate::{Error, NewEvent, RunStatus, StepKind};

fn start() -> DateTime<Utc> {
    "2026-06-01T12:00:00Z".parse().expect("a valid time")
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

async fn announce<S: Store>(store: &S, functions: &[(&str, &str)]) {
    let infos: Vec<FunctionInfo> = functions
        .iter()
        .map(|(id, trigger)| FunctionInfo {
            id: id.to_string(),
            trigger: trigger.to_string(),
        })
        .collect();
    store
        .register_functions(&infos, start())
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
        max,
        lease: Duration::from_secs(30),
    };
    store.claim(request, at).await.expect("claim")
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
pub async fn send_starts_one_run_per_announced_function<S: Store>(store: S) {
    announce(&store, &[("a", "t/fan"), ("b", "t/fan"), ("c", "t/other")]).await;
    let receipt = store
        .send(vec![event("t/fan", 1), event("t/nobody", 2)], start())
        .await
        .expect("send");
    assert_eq!(receipt.event_ids.len(), 2);
    assert_eq!(
        receipt.runs.len(),
        2,
        "t/fan starts a and b; t/nobody starts nothing"
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

/// A producer id starts runs once within 24 hours, across sends and within a batch.
pub async fn producer_ids_deduplicate_for_24_hours<S: Store>(store: S) {
    announce(&store, &[("a", "t/dedupe")]).await;
    let first = store
        .send(
            vec![
                event("t/dedupe", 1).id("same"),
                event("t/dedupe", 1).id("same"),
            ],
            start(),
        )
        .await
        .expect("send");
    assert_eq!((first.runs.len(), first.duplicates), (1, 1));
    assert_eq!(first.event_ids[0], first.event_ids[1]);
    let again = store
        .send(
            vec![event("t/dedupe", 1).id("same")],
            start() + secs(86_399),
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
            start() + secs(86_400),
        )
        .await
        .expect("send");
    assert_eq!(later.runs.len(), 1, "accepted again after 24 hours");
}

/// Claims lease due runs of the given functions once each, up to `max`.
pub async fn claims_lease_each_due_run_once<S: Store>(store: S) {
    announce(&store, &[("a", "t/claim"), ("b", "t/skip")]).await;
    store
        .send(
            (0..3)
                .map(|n| event("t/claim", n))
                .chain([event("t/skip", 9)])
                .collect(),
            start(),
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

/// A checkpoint with the run's current token is kept; one with a stale token is not.
pub async fn checkpoints_are_fenced_by_the_lease_token<S: Store>(store: S) {
    announce(&store, &[("a", "t/fence")]).await;
    store
        .send(vec![event("t/fence", 1)], start())
        .await
        .expect("send");
    let run = claim(&store, "w", &["a"], 1, start()).await.remove(0);
    let stale = Lease {
        token: run.lease.token - 1,
        ..run.lease.clone()
    };
    let written = store
        .checkpoint(
            &[
                (run.lease.clone(), step("one", 0, start())),
                (run.lease.clone(), step("two", 1, start())),
                (stale, step("three", 2, start())),
            ],
            Duration::from_secs(30),
            start(),
        )
        .await
        .expect("checkpoint");
    assert_eq!(written, [true, true, false]);
    let loaded = store.checkpoints(run.lease.run_id).await.expect("load");
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

/// A parked run is claimable again only when due, by any worker, with a new token.
pub async fn parked_runs_wake_when_due<S: Store>(store: S) {
    announce(&store, &[("a", "t/park")]).await;
    store
        .send(vec![event("t/park", 1)], start())
        .await
        .expect("send");
    let run = claim(&store, "w1", &["a"], 1, start()).await.remove(0);
    store
        .checkpoint(
            &[(run.lease.clone(), step("before", 0, start()))],
            Duration::from_secs(30),
            start(),
        )
        .await
        .expect("checkpoint");
    let due = start() + secs(60);
    store
        .park(&run.lease, Park::Sleep(due), start())
        .await
        .expect("park");
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
        store.next_wakeup(&["a".to_string()]).await.expect("next"),
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
            .checkpoints(resumed.lease.run_id)
            .await
            .expect("load")
            .steps
            .len(),
        1
    );
    // The first worker's lease is gone: its writes change nothing.
    let late = store
        .checkpoint(
            &[(run.lease.clone(), step("late", 1, due))],
            Duration::from_secs(30),
            due,
        )
        .await;
    assert_eq!(late.expect("checkpoint"), [false]);
    assert!(matches!(
        store
            .finish(&run.lease, &Outcome::Completed(json!(1)), due)
            .await,
        Err(Error::LeaseLost(_))
    ));
}

/// Failed attempts are recorded and counted; finishing stores the outcome.
pub async fn failures_and_outcomes_are_recorded<S: Store>(store: S) {
    announce(&store, &[("a", "t/finish")]).await;
    store
        .send(vec![event("t/finish", 1), event("t/finish", 2)], start())
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
    store
        .record_failure(&runs[0].lease, &attempt)
        .await
        .expect("record");
    assert_eq!(
        store
            .checkpoints(runs[0].lease.run_id)
            .await
            .expect("load")
            .failed_attempts,
        [("flaky".to_string(), 1)]
    );
    store
        .finish(
            &runs[0].lease,
            &Outcome::Completed(json!({ "ok": true })),
            start(),
        )
        .await
        .expect("finish");
    store
        .finish(&runs[1].lease, &Outcome::Failed("it broke".into()), start())
        .await
        .expect("finish");
    let done = store
        .run(runs[0].lease.run_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        (done.status, done.output),
        (RunStatus::Completed, Some(json!({ "ok": true })))
    );
    assert_eq!(done.failures.len(), 1);
    assert_eq!(done.failures[0].error, "timed out");
    let failed = store
        .run(runs[1].lease.run_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        (failed.status, failed.error.as_deref()),
        (RunStatus::Failed, Some("it broke"))
    );
    assert!(matches!(
        store
            .finish(&runs[0].lease, &Outcome::Failed("again".into()), start())
            .await,
        Err(Error::LeaseLost(_))
    ));
}

/// Renewal extends only the owner's leases; expired ones are recovered, and a run
/// lost too often fails naming the step it was in.
pub async fn leases_are_renewed_recovered_and_given_up<S: Store>(store: S) {
    announce(&store, &[("a", "t/lease")]).await;
    store
        .send(vec![event("t/lease", 1), event("t/lease", 2)], start())
        .await
        .expect("send");
    let mine = claim(&store, "me", &["a"], 1, start()).await.remove(0);
    let theirs = claim(&store, "them", &["a"], 1, start()).await.remove(0);
    let renewed = store
        .renew("me", Duration::from_secs(300), start() + secs(20))
        .await
        .expect("renew");
    assert_eq!(renewed, [mine.lease.run_id]);
    // Their lease (30 s) expires; mine (renewed to 320 s) does not.
    assert_eq!(
        store
            .recover_expired(2, start() + secs(31))
            .await
            .expect("recover"),
        1
    );
    assert_eq!(
        store
            .run(theirs.lease.run_id)
            .await
            .expect("read")
            .expect("exists")
            .status,
        RunStatus::Queued
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
    store
        .mark_step(&again.lease, "charge-card")
        .await
        .expect("mark");
    assert_eq!(
        store
            .recover_expired(2, start() + secs(62))
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
}

/// Sends and releases announce "now"; parks announce their due time.
pub async fn wakeups_announce_new_work<S: Store>(store: S) {
    announce(&store, &[("a", "t/wake")]).await;
    let mut wakeups = store.wakeups().await.expect("listen");
    // Notifications take effect once the stream exists; give a server a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    store
        .send(vec![event("t/wake", 1)], start())
        .await
        .expect("send");
    let first = tokio::time::timeout(Duration::from_secs(10), wakeups.next())
        .await
        .expect("a wake-up");
    assert_eq!(first, Some(Wakeup::Now));
    let run = claim(&store, "w", &["a"], 1, start()).await.remove(0);
    let due = start() + secs(5);
    store
        .park(&run.lease, Park::Retry(due), start())
        .await
        .expect("park");
    let parked = tokio::time::timeout(Duration::from_secs(10), wakeups.next())
        .await
        .expect("a wake-up");
    assert_eq!(parked, Some(Wakeup::At(due)));
}

/// One `#[tokio::test]` per conformance check, each on a fresh store from `$make`
/// (an expression that evaluates to a future of the store).
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@each $make;
            send_starts_one_run_per_announced_function,
            producer_ids_deduplicate_for_24_hours,
            claims_lease_each_due_run_once,
            checkpoints_are_fenced_by_the_lease_token,
            parked_runs_wake_when_due,
            failures_and_outcomes_are_recorded,
            leases_are_renewed_recovered_and_given_up,
            wakeups_announce_new_work,
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
