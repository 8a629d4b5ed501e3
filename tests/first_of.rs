//! Races (`ctx.first_of`): the branch that finishes first wins and is recorded, so a
//! replay returns it again; branches that finished together go to the first in the
//! tuple; a sleep wins when nothing comes; a losing wait is closed, so it holds no
//! signal name (or event) once the race is over.

mod common;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use flow::prelude::*;
use flow::{First2, First3, RunStatus, StepKind};

const WAIT: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 3600);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/first_of.order")]
struct Order {
    id: String,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/first_of.approved")]
struct Approved {
    order: String,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/first_of.rejected")]
struct Rejected {
    order: String,
    reason: String,
}

/// Orders whose `after` step has failed once (so that the run replays the race).
static FAILED_ONCE: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Approved, rejected, or an hour without either: whichever comes first.
#[function(event = "test/first_of.order")]
async fn decide(ctx: &Ctx, order: Order) -> Result<String, FlowError> {
    let decision = ctx
        .first_of(
            "decision",
            (
                ctx.wait_for_event::<Approved>("approved")
                    .matching(|f| f.order, order.id.as_str())
                    .timeout(DAY),
                ctx.wait_for_event::<Rejected>("rejected")
                    .matching(|f| f.order, order.id.as_str())
                    .timeout(DAY),
                ctx.sleep("give-up", Duration::from_secs(3600)),
            ),
        )
        .await?;
    let said = match decision {
        First3::A(Some(_)) => "approved".to_owned(),
        First3::B(Some(rejected)) => format!("rejected: {}", rejected.reason),
        First3::A(None) | First3::B(None) => "a wait timed out".to_owned(),
        First3::C(()) => "gave up".to_owned(),
    };
    // Fails its first attempt: the retry replays the race from its record.
    let id = order.id.clone();
    ctx.run("after", || async move {
        let first = FAILED_ONCE
            .lock()
            .unwrap()
            .get_or_insert_with(HashSet::new)
            .insert(id);
        if first {
            Err(StepError::retry_after("once", Duration::ZERO))
        } else {
            Ok(())
        }
    })
    .await?;
    Ok(said)
}

async fn order(client: &flow::Client, id: &str) -> flow::RunId {
    let order = Order { id: id.into() };
    client.send(order).await.unwrap().runs[0].1
}

async fn until_waiting(client: &flow::Client, run: flow::RunId) {
    common::eventually(WAIT, "the run to wait", || async {
        common::status(client, run).await == RunStatus::Waiting
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_event_wins_is_recorded_and_replays() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(common::worker(&store).register::<decide>()).await;
    let run = order(&client, "o-1").await;
    until_waiting(&client, run).await;
    client
        .send(Rejected {
            order: "o-1".into(),
            reason: "too big".into(),
        })
        .await
        .unwrap();
    let said: String = client.result(run, WAIT).await.unwrap();
    assert_eq!(said, "rejected: too big");
    let view = client.run(run).await.unwrap().unwrap();
    let step = |key: &str| view.steps.iter().find(|s| s.key == key).unwrap();
    let decision = step("decision");
    assert_eq!(decision.kind, StepKind::FirstOf);
    assert_eq!(
        decision.output,
        Some(serde_json::json!({ "winner": 1, "key": "rejected" }))
    );
    // The losing wait was closed with a null record; the retry replayed the race.
    assert_eq!(step("approved").output, Some(serde_json::Value::Null));
    assert_eq!(step("after").attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_that_finished_together_go_to_the_first_in_the_tuple() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let builder = || {
        common::worker(&store)
            .register::<decide>()
            .clock(clock.clone())
    };
    let worker = common::spawn_worker(builder()).await;
    let run = order(&client, "o-2").await;
    until_waiting(&client, run).await;
    worker.stop().await.unwrap();
    // While no worker runs, the hour passes (the sleep, third, is due), and then
    // the rejection comes (the wait, second, is resolved in the store).
    clock.advance(Duration::from_secs(3600));
    client
        .send(Rejected {
            order: "o-2".into(),
            reason: "late".into(),
        })
        .await
        .unwrap();
    let _worker = common::spawn_worker(builder()).await;
    let said: String = client.result(run, WAIT).await.unwrap();
    assert_eq!(said, "rejected: late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_wins_when_nothing_comes() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<decide>()
            .clock(clock.clone()),
    )
    .await;
    let run = order(&client, "o-3").await;
    until_waiting(&client, run).await;
    clock.advance(Duration::from_secs(3600));
    let said: String = client.result(run, WAIT).await.unwrap();
    assert_eq!(said, "gave up");
    // An event after the race changes nothing.
    client
        .send(Approved {
            order: "o-3".into(),
        })
        .await
        .unwrap();
    let view = client.run(run).await.unwrap().unwrap();
    let approved = view.steps.iter().find(|s| s.key == "approved").unwrap();
    assert_eq!(approved.output, Some(serde_json::Value::Null));
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/first_of.hold")]
struct Hold {
    name: String,
    release: String,
}

/// A signal against an hour's nap; then holds on, waiting to be released.
#[function(event = "test/first_of.hold")]
async fn hold(ctx: &Ctx, hold: Hold) -> Result<String, FlowError> {
    let first = ctx
        .first_of(
            "race",
            (
                ctx.wait_for_signal::<String>("signal", hold.name.as_str())
                    .timeout(DAY),
                ctx.sleep("nap", Duration::from_secs(3600)),
            ),
        )
        .await?;
    let said = match first {
        First2::A(signal) => format!("signal {signal:?}"),
        First2::B(()) => "slept".to_owned(),
    };
    ctx.wait_for_signal::<String>("release", hold.release.as_str())
        .timeout(DAY)
        .await?;
    Ok(said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_losing_signal_wait_frees_its_name() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<hold>()
            .clock(clock.clone()),
    )
    .await;
    let start = |release: &str| Hold {
        name: "shared".into(),
        release: release.into(),
    };
    let first = client.send(start("release-1")).await.unwrap().runs[0].1;
    until_waiting(&client, first).await;
    clock.advance(Duration::from_secs(3600));
    // The nap won: the run goes on to wait for its release, its race recorded.
    common::eventually(WAIT, "the first run to wait for its release", || async {
        let view = client.run(first).await.unwrap().unwrap();
        view.status == RunStatus::Waiting && view.steps.iter().any(|s| s.key == "race")
    })
    .await;
    // The name it raced on is free for another run.
    let second = client.send(start("release-2")).await.unwrap().runs[0].1;
    until_waiting(&client, second).await;
    let reached = client.signal("shared", "hi").await.unwrap();
    assert_eq!(reached, second);
    for (run, release, said) in [
        (first, "release-1", "slept"),
        (second, "release-2", "signal Some(\"hi\")"),
    ] {
        common::eventually(WAIT, "the run to wait for its release", || async {
            client.signal(release, "go").await.is_ok()
        })
        .await;
        let out: String = client.result(run, WAIT).await.unwrap();
        assert_eq!(out, said);
    }
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/first_of.slow")]
struct Slow {
    release: String,
}

/// Finishes once released.
#[function(event = "test/first_of.slow")]
async fn slow(ctx: &Ctx, slow: Slow) -> Result<u32, FlowError> {
    ctx.wait_for_signal::<u32>("release", slow.release.as_str())
        .timeout(DAY)
        .await?;
    Ok(7)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/first_of.impatient")]
struct Impatient {
    release: String,
}

/// An invoke of `slow` against an hour's nap.
#[function(event = "test/first_of.impatient")]
async fn impatient(ctx: &Ctx, impatient: Impatient) -> Result<String, FlowError> {
    let slow_run = slow::with(Slow {
        release: impatient.release,
    });
    let first = ctx
        .first_of(
            "race",
            (
                ctx.invoke("slow", slow_run),
                ctx.sleep("nap", Duration::from_secs(3600)),
            ),
        )
        .await?;
    Ok(match first {
        First2::A(said) => format!("slow said {said}"),
        First2::B(()) => "slept".to_owned(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_losing_invoke_is_closed_and_its_run_goes_on() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<slow>()
            .register::<impatient>()
            .clock(clock.clone()),
    )
    .await;
    let event = Impatient {
        release: "slow/1".into(),
    };
    let parent = client.send(event).await.unwrap().runs[0].1;
    until_waiting(&client, parent).await;
    clock.advance(Duration::from_secs(3600));
    let said: String = client.result(parent, WAIT).await.unwrap();
    assert_eq!(said, "slept");
    let view = client.run(parent).await.unwrap().unwrap();
    let invoke = view.steps.iter().find(|s| s.key == "slow").unwrap();
    assert_eq!(invoke.kind, StepKind::Invoke);
    let error = invoke.error.as_ref().expect("the losing invoke's record");
    assert!(
        error.to_string().contains("lost the race `race`"),
        "{error}"
    );
    // The invoked run goes on, and its end changes nothing in its parent.
    let release = async {
        loop {
            match client.signal("slow/1", 1u32).await {
                Ok(child) => break child,
                // The invoked run may not wait yet.
                Err(flow::Error::NoSignalWaiter { .. }) => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                Err(e) => panic!("{e}"),
            }
        }
    };
    let child = tokio::time::timeout(WAIT, release)
        .await
        .expect("the invoked run waits for its release");
    let out: u32 = client.result(child, WAIT).await.unwrap();
    assert_eq!(out, 7);
    let after = client.run(parent).await.unwrap().unwrap();
    let records = |v: &flow::RunView| {
        v.steps
            .iter()
            .map(|s| (s.key.clone(), s.output.clone(), s.error.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(records(&after), records(&view));
}
