//! `run_concurrency(...)`: a limit on runs active at once per key, from a run's
//! first start to its end, sleeping and waiting ones included (where
//! `concurrency(...)` counts only runs executing steps). A run that has not
//! started waits while its key is full; one that has started is never held again;
//! a run that ends, or is cancelled while it waits, frees its key; claimers racing
//! for a key never start more than its limit.

mod common;

use std::time::Duration;

use flow::RunStatus;
use flow::prelude::*;

const WAIT: Duration = Duration::from_secs(60);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/run_concurrency.trial")]
struct Trial {
    customer: String,
    /// Wait for `Go` before finishing.
    waits: bool,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/run_concurrency.go")]
struct Go {
    customer: String,
}

/// One trial per customer at a time, however long it waits.
#[function(
    event = "test/run_concurrency.trial",
    run_concurrency(limit = 1, key = "event.data.customer")
)]
async fn trial(ctx: &Ctx, trial: Trial) -> Result<bool, FlowError> {
    if trial.waits {
        let go = ctx
            .wait_for_event::<Go>("go")
            .matching(|f| f.customer, trial.customer)
            .timeout(Duration::from_secs(3600))
            .await?;
        return Ok(go.is_some());
    }
    Ok(false)
}

async fn send(client: &flow::Client, customer: &str, waits: bool) -> flow::RunId {
    let trial = Trial {
        customer: customer.into(),
        waits,
    };
    client.send(trial).await.unwrap().runs[0].1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_holds_its_key_until_it_ends() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker =
        common::spawn_worker(common::worker(&store).concurrency(4).register::<trial>()).await;
    let first = send(&client, "a", true).await;
    common::eventually(WAIT, "the first run to wait", || async {
        common::status(&client, first).await == RunStatus::Waiting
    })
    .await;
    let second = send(&client, "a", false).await;
    // Another customer's run, sent after `a`'s second: it finishes, so every
    // claim since the second was sent looked at the second (claims go in due
    // order), and left it queued.
    let other = send(&client, "b", false).await;
    let went: bool = client.result(other, WAIT).await.unwrap();
    assert!(!went);
    let view = client.run(second).await.unwrap().unwrap();
    assert_eq!(
        view.status,
        RunStatus::Queued,
        "held while `a`'s trial waits"
    );
    assert!(view.started_at.is_none());

    client
        .send(Go {
            customer: "a".into(),
        })
        .await
        .unwrap();
    // The first is not held when it wakes, though its key counts itself.
    let first_view = client.wait(first, WAIT).await.unwrap();
    assert_eq!(
        first_view.status,
        RunStatus::Completed,
        "{:?}",
        first_view.error
    );
    let second_view = client.wait(second, WAIT).await.unwrap();
    assert_eq!(
        second_view.status,
        RunStatus::Completed,
        "{:?}",
        second_view.error
    );
    assert!(
        second_view.started_at.unwrap() >= first_view.finished_at.unwrap(),
        "the second trial started after the first ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cancelled_while_it_waits_frees_its_key() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker =
        common::spawn_worker(common::worker(&store).concurrency(4).register::<trial>()).await;
    let first = send(&client, "c", true).await;
    common::eventually(WAIT, "the first run to wait", || async {
        common::status(&client, first).await == RunStatus::Waiting
    })
    .await;
    let second = send(&client, "c", true).await;
    let cancelled = client.cancel(first, "no longer needed").await.unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    // The second starts, and now waits in its turn; its own `go` finishes it.
    common::eventually(WAIT, "the second run to wait", || async {
        common::status(&client, second).await == RunStatus::Waiting
    })
    .await;
    client
        .send(Go {
            customer: "c".into(),
        })
        .await
        .unwrap();
    let went: bool = client.result(second, WAIT).await.unwrap();
    assert!(went);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimers_racing_for_one_key_start_no_more_than_its_limit() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let worker = common::worker(&store).register::<trial>().build().unwrap();
    worker.announce().await.unwrap();
    let limited = std::sync::Arc::new(
        flow::flow_control::Limited::of([<trial as flow::Function>::DEF]).unwrap(),
    );
    for round in 0..10 {
        // Eight runs of one key, and eight claimers of one run each, let go at
        // once: without the key's lock each would see no active run and start one.
        let customer = format!("race-{round}");
        for _ in 0..8 {
            send(&client, &customer, false).await;
        }
        let claimed = common::race_eight_claimers(&store, &limited).await;
        assert_eq!(claimed, 1, "round {round}: a limit of 1");
    }
}
