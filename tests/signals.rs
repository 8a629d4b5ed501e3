//! Signals: `client.signal` reaches the one run waiting on the name and wakes it;
//! a signal nobody waits for is refused (or kept, when asked, for the next wait,
//! oldest first); a second run waiting on a name fails its wait naming the first;
//! a wait that times out frees its name; a signal racing its wait is never lost;
//! bad names and payloads are refused with errors that say why.

mod common;

use std::time::Duration;

use flow::prelude::*;
use flow::{RunStatus, SignalReceipt, StepKind};

const WAIT: Duration = Duration::from_secs(60);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/signals.await")]
struct AwaitApproval {
    name: String,
}

#[derive(Serialize, Deserialize)]
struct Approval {
    by: String,
}

/// Waits up to an hour for the signal named in its event; says what it got.
#[function(event = "test/signals.await")]
async fn await_approval(ctx: &Ctx, event: AwaitApproval) -> Result<String, FlowError> {
    let approval = ctx
        .wait_for_signal::<Approval>("approval", event.name.as_str())
        .timeout(Duration::from_secs(3600))
        .await;
    // A step after the wait: the run resumes, so the wait's answer is a replay.
    let after = ctx.run("after", || async { Ok::<_, StepError>(()) }).await;
    after?;
    Ok(match approval {
        Ok(Some(approval)) => format!("approved by {}", approval.by),
        Ok(None) => "timed out".to_owned(),
        Err(e) => format!("refused: {e}"),
    })
}

async fn start(client: &flow::Client, name: &str) -> flow::RunId {
    let event = AwaitApproval { name: name.into() };
    client.send(event).await.unwrap().runs[0].1
}

async fn until_waiting(client: &flow::Client, run: flow::RunId) {
    common::eventually(WAIT, "the run to wait", || async {
        common::status(client, run).await == RunStatus::Waiting
    })
    .await;
}

fn approval(by: &str) -> Approval {
    Approval { by: by.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_reaches_the_run_waiting_on_its_name() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(common::worker(&store).register::<await_approval>()).await;
    let run = start(&client, "approval/order-1").await;
    until_waiting(&client, run).await;
    let reached = client
        .signal("approval/order-1", approval("ana"))
        .await
        .unwrap();
    assert_eq!(reached, run);
    let said: String = client.result(run, WAIT).await.unwrap();
    assert_eq!(said, "approved by ana");
    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(view.steps[0].key, "approval");
    assert_eq!(view.steps[0].kind, StepKind::Signal);
    // Delivered once: the name has no waiter now.
    let again = client.signal("approval/order-1", approval("bo")).await;
    assert!(
        matches!(&again, Err(flow::Error::NoSignalWaiter { name }) if name == "approval/order-1"),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_nobody_waits_for_is_refused_and_a_timed_out_wait_frees_its_name() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<await_approval>()
            .clock(clock.clone()),
    )
    .await;
    let refused = client.signal("approval/early", approval("ana")).await;
    let message = refused.as_ref().unwrap_err().to_string();
    assert!(
        message.contains("no run waits for signal `approval/early`")
            && message.contains("signal_or_buffer"),
        "{message}"
    );
    // Nothing was kept: the wait that comes later times out.
    let first = start(&client, "approval/early").await;
    until_waiting(&client, first).await;
    clock.advance(Duration::from_secs(3600));
    let said: String = client.result(first, WAIT).await.unwrap();
    assert_eq!(said, "timed out");
    // The timed-out wait holds the name no more.
    let second = start(&client, "approval/early").await;
    until_waiting(&client, second).await;
    let reached = client
        .signal("approval/early", approval("bo"))
        .await
        .unwrap();
    assert_eq!(reached, second);
    let said: String = client.result(second, WAIT).await.unwrap();
    assert_eq!(said, "approved by bo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_signals_go_to_the_next_waits_oldest_first() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(common::worker(&store).register::<await_approval>()).await;
    for by in ["ana", "bo"] {
        let kept = client
            .signal_or_buffer("approval/queue", approval(by))
            .await
            .unwrap();
        assert_eq!(kept, SignalReceipt::Buffered);
    }
    for by in ["ana", "bo"] {
        let run = start(&client, "approval/queue").await;
        let said: String = client.result(run, WAIT).await.unwrap();
        assert_eq!(said, format!("approved by {by}"));
    }
    // With a run waiting, a buffered send is delivered.
    let run = start(&client, "approval/queue").await;
    until_waiting(&client, run).await;
    let sent = client
        .signal_or_buffer("approval/queue", approval("cy"))
        .await
        .unwrap();
    assert_eq!(sent, SignalReceipt::Delivered(run));
    let said: String = client.result(run, WAIT).await.unwrap();
    assert_eq!(said, "approved by cy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_waiting_on_a_name_fails_its_wait_naming_the_first() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(common::worker(&store).register::<await_approval>()).await;
    let first = start(&client, "approval/shared").await;
    until_waiting(&client, first).await;
    let second = start(&client, "approval/shared").await;
    let said: String = client.result(second, WAIT).await.unwrap();
    assert!(
        said.starts_with("refused: ")
            && said.contains(&format!("which run {first} awaits already"))
            && said.contains("signal `approval/shared`"),
        "{said}"
    );
    let view = client.run(second).await.unwrap().unwrap();
    assert_eq!(view.steps[0].kind, StepKind::Signal);
    // The first still holds the name, and gets the signal.
    let reached = client
        .signal("approval/shared", approval("ana"))
        .await
        .unwrap();
    assert_eq!(reached, first);
    let said: String = client.result(first, WAIT).await.unwrap();
    assert_eq!(said, "approved by ana");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_racing_its_wait_is_never_lost_nor_delivered_twice() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(common::worker(&store).register::<await_approval>()).await;
    const RUNS: usize = 48;
    let mut runs = Vec::new();
    for i in 0..RUNS {
        let name = format!("approval/race-{i}");
        let run = start(&client, &name).await;
        // Sent while the run is claimed and parks: before, during or after.
        tokio::time::sleep(Duration::from_millis((i % 6) as u64)).await;
        if i % 2 == 0 {
            // Kept if it comes first: the wait then takes it.
            client
                .signal_or_buffer(&name, approval(&format!("u{i}")))
                .await
                .unwrap();
        } else {
            // Not kept: sent again until a wait receives it, exactly once.
            let client = client.clone();
            tokio::spawn(async move {
                loop {
                    match client.signal(&name, approval(&format!("u{i}"))).await {
                        Ok(reached) => {
                            assert_eq!(reached, run);
                            return;
                        }
                        Err(flow::Error::NoSignalWaiter { .. }) => {
                            tokio::time::sleep(Duration::from_millis(5)).await
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
        runs.push(run);
    }
    for (i, run) in runs.into_iter().enumerate() {
        let said: String = client.result(run, WAIT).await.unwrap();
        assert_eq!(said, format!("approved by u{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_does_not_fit_is_the_waits_error() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(common::worker(&store).register::<await_approval>()).await;
    let run = start(&client, "approval/typo").await;
    until_waiting(&client, run).await;
    client
        .signal("approval/typo", serde_json::json!({ "by": 7 }))
        .await
        .unwrap();
    let said: String = client.result(run, WAIT).await.unwrap();
    assert!(
        said.starts_with(
            "refused: signal wait `approval` was resolved by signal \"approval/typo\""
        ) && said.contains("does not fit"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_payloads_are_refused_saying_why() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let long = "n".repeat(flow::SIGNAL_NAME_BYTES + 1);
    for (name, expected) in [
        ("", "a signal name cannot be empty"),
        (long.as_str(), "257 bytes, over the limit of 256 bytes"),
        ("approval\0x", "NUL character"),
    ] {
        let refused = client.signal(name, approval("ana")).await;
        assert!(
            matches!(&refused, Err(flow::Error::InvalidSignal(m)) if m.contains(expected)),
            "{name:?}: {refused:?}"
        );
        let refused = client.signal_or_buffer(name, approval("ana")).await;
        assert!(
            matches!(&refused, Err(flow::Error::InvalidSignal(m)) if m.contains(expected)),
            "{name:?}: {refused:?}"
        );
    }
    let refused = client
        .signal_or_buffer("approval/nul", approval("a\0b"))
        .await;
    assert!(
        matches!(&refused, Err(flow::Error::InvalidSignal(m)) if m.contains("at `$.by`")),
        "{refused:?}"
    );
    let small = client.clone().with_limits(flow::Limits {
        event_bytes: 16,
        ..flow::Limits::DEFAULT
    });
    let refused = small
        .signal_or_buffer("approval/big", approval("a very long name indeed"))
        .await;
    assert!(
        matches!(
            &refused,
            Err(flow::Error::Limit {
                setting: "event_bytes",
                ..
            })
        ),
        "{refused:?}"
    );
    // Nothing was kept by any of them.
    let kept = common::count(
        &store,
        "SELECT count(*) FROM flow.signal_buffer",
        "SELECT count(*) FROM flow_signal_buffer",
    )
    .await;
    assert_eq!(kept, 0);

    // A run that waits on a name no signal can have fails, saying why.
    let _worker = common::spawn_worker(common::worker(&store).register::<await_approval>()).await;
    let run = start(&client, "").await;
    let failed = client.result::<String>(run, WAIT).await;
    assert!(
        matches!(&failed, Err(flow::Error::RunFailed { message, .. })
            if message.contains("signal wait `approval`: a signal name cannot be empty")),
        "{failed:?}"
    );
}
