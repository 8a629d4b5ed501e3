//! Waiting for events: a wait returns the first event whose field matches, and a
//! replay returns the same; it returns `None` when its timeout passes; an event
//! stored while the run is on its way to the wait (or racing its park) is never
//! lost; `lookback` reaches events stored before the wait; a wait in a loop never
//! returns one event twice.

mod common;

use std::future::IntoFuture;
use std::time::Duration;

use flow::prelude::*;
use flow::{RunStatus, StepKind};

const WAIT: Duration = Duration::from_secs(60);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/waits.charged")]
struct Charged {
    payment_id: String,
    #[serde(default)]
    lookback_secs: u64,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "test/waits.confirmed")]
#[serde(rename_all = "camelCase")]
struct Confirmed {
    payment_id: String,
    amount: i64,
}

/// Waits up to an hour for the confirmation of its payment.
#[function(event = "test/waits.charged")]
async fn await_confirmation(ctx: &Ctx, event: Charged) -> Result<Option<i64>, FlowError> {
    let confirmed = ctx
        .wait_for_event::<Confirmed>("confirmation")
        .matching(|f| f.payment_id, event.payment_id.as_str())
        .lookback(Duration::from_secs(event.lookback_secs))
        .timeout(Duration::from_secs(3600))
        .await?;
    Ok(confirmed.map(|c| c.amount))
}

/// Sends the charge of `payment_id`; returns the run it starts.
async fn charge(
    client: &flow::Client,
    payment_id: impl Into<String>,
    lookback_secs: u64,
) -> flow::RunId {
    let charged = Charged {
        payment_id: payment_id.into(),
        lookback_secs,
    };
    client.send(charged).await.unwrap().runs[0].1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_returns_the_event_whose_field_matches_and_replays_it() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker =
        common::spawn_worker(common::worker(&store).register::<await_confirmation>()).await;
    let run = charge(&client, "pay-1", 0).await;
    common::eventually(WAIT, "the run to wait", || async {
        common::status(&client, run).await == RunStatus::Waiting
    })
    .await;
    // Another payment's confirmation first: it must not resolve this wait.
    client
        .send(Confirmed {
            payment_id: "pay-2".into(),
            amount: 2,
        })
        .await
        .unwrap();
    let sent = client
        .send(Confirmed {
            payment_id: "pay-1".into(),
            amount: 1,
        })
        .await
        .unwrap();
    assert!(
        sent.unmatched.is_empty(),
        "an event a wait awaits is not unmatched: {:?}",
        sent.unmatched
    );
    let amount: Option<i64> = client.result(run, WAIT).await.unwrap();
    assert_eq!(amount, Some(1));
    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(view.steps[0].key, "confirmation");
    assert_eq!(view.steps[0].kind, StepKind::Wait);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_returns_none_once_its_timeout_passes() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<await_confirmation>()
            .clock(clock.clone()),
    )
    .await;
    let run = charge(&client, "pay-late", 0).await;
    common::eventually(WAIT, "the run to wait", || async {
        common::status(&client, run).await == RunStatus::Waiting
    })
    .await;
    clock.advance(Duration::from_secs(3600));
    let amount: Option<i64> = client.result(run, WAIT).await.unwrap();
    assert_eq!(amount, None);
    // A confirmation after the timeout changes nothing.
    client
        .send(Confirmed {
            payment_id: "pay-late".into(),
            amount: 5,
        })
        .await
        .unwrap();
    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(view.status, RunStatus::Completed);
    assert_eq!(view.output, Some(serde_json::Value::Null));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stored_before_the_wait_counts_only_within_the_lookback() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<await_confirmation>()
            .clock(clock.clone()),
    )
    .await;
    for id in ["early-1", "early-2"] {
        client
            .send(Confirmed {
                payment_id: id.into(),
                amount: 7,
            })
            .await
            .unwrap();
    }
    clock.advance(Duration::from_secs(600));
    let without = charge(&client, "early-1", 0).await;
    let within = charge(&client, "early-2", 900).await;
    let amount: Option<i64> = client.result(within, WAIT).await.unwrap();
    assert_eq!(amount, Some(7), "ten minutes back is within the lookback");
    common::eventually(WAIT, "the run without lookback to wait", || async {
        common::status(&client, without).await == RunStatus::Waiting
    })
    .await;
    clock.advance(Duration::from_secs(3600));
    let amount: Option<i64> = client.result(without, WAIT).await.unwrap();
    assert_eq!(
        amount, None,
        "an event ten minutes before the run does not count"
    );
}

/// Sends each run's confirmation the moment the run is created, so that it lands
/// while the run is on its way to its wait or parking on it: every wait must be
/// resolved, however the two interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_racing_the_park_of_its_wait_is_never_lost() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<await_confirmation>()
            .concurrency(16),
    )
    .await;
    let mut runs = Vec::new();
    let mut sends = Vec::new();
    for i in 0..150 {
        let payment_id = format!("race-{i}");
        let run = client
            .send(Charged {
                payment_id: payment_id.clone(),
                lookback_secs: 0,
            })
            .await
            .unwrap()
            .runs[0]
            .1;
        runs.push((i, run));
        let client = client.clone();
        // Some right away, some after a moment: both sides of the park.
        let delay = Duration::from_micros((i % 10) * 700);
        sends.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            client
                .send(Confirmed {
                    payment_id,
                    amount: i as i64,
                })
                .await
                .unwrap();
        }));
    }
    for send in sends {
        send.await.unwrap();
    }
    for (i, run) in runs {
        let amount: Option<i64> = client.result(run, WAIT).await.unwrap();
        assert_eq!(amount, Some(i as i64), "run {i}");
    }
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/waits.session")]
struct Session {
    user: i64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/waits.ping")]
struct Ping {
    user: i64,
    n: u32,
}

/// Three waits in a loop on the same kind of event, a step between each.
#[function(event = "test/waits.session")]
async fn three_pings(ctx: &Ctx, event: Session) -> Result<Vec<u32>, FlowError> {
    let mut seen = Vec::new();
    for _ in 0..3 {
        let ping = ctx
            .wait_for_event::<Ping>("ping")
            .matching(|f| f.user, event.user)
            .timeout(Duration::from_secs(3600))
            .await?;
        let n = ping.map_or(0, |p| p.n);
        seen.push(
            ctx.run("note", || async move { Ok::<_, StepError>(n) })
                .await?,
        );
    }
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_in_a_loop_never_return_one_event_twice() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(common::worker(&store).register::<three_pings>()).await;
    let run = client.send(Session { user: 9 }).await.unwrap().runs[0].1;
    for n in 1..=3 {
        common::eventually(WAIT, "the run to wait", || async {
            let view = client.run(run).await.unwrap().unwrap();
            view.status == RunStatus::Waiting
                && view
                    .steps
                    .iter()
                    .filter(|s| s.kind == StepKind::Wait)
                    .count()
                    == n - 1
        })
        .await;
        client
            .send(Ping {
                user: 9,
                n: n as u32,
            })
            .await
            .unwrap();
    }
    let seen: Vec<u32> = client.result(run, WAIT).await.unwrap();
    assert_eq!(seen, vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_on_a_value_too_long_to_index_fails_its_run_saying_so() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker =
        common::spawn_worker(common::worker(&store).register::<await_confirmation>()).await;
    let run = charge(&client, "x".repeat(flow::MATCH_VALUE_BYTES), 0).await;
    let view = client.wait(run, WAIT).await.unwrap();
    assert_eq!(view.status, RunStatus::Failed);
    let error = view.error.expect("the failure is named");
    assert!(
        error.contains("over the limit of 1024 bytes") && error.contains("`paymentId`"),
        "{error}"
    );
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/waits.patient")]
struct Patient {
    payment_id: String,
}

/// Waits for its confirmation and, beside it, sleeps an hour: done when both are.
#[function(event = "test/waits.patient")]
async fn patient(ctx: &Ctx, event: Patient) -> Result<Option<i64>, FlowError> {
    let (confirmed, slept) = tokio::join!(
        ctx.wait_for_event::<Confirmed>("confirmation")
            .matching(|f| f.payment_id, event.payment_id.as_str())
            .timeout(Duration::from_secs(24 * 3600))
            .into_future(),
        ctx.sleep("nap", Duration::from_secs(3600)),
    );
    slept?;
    Ok(confirmed?.map(|c| c.amount))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_joined_with_a_wait_counts_from_its_call() {
    let (store, _) = common::store().await;
    let clock = common::clock();
    let client = flow::Client::new(store.clone()).with_clock(clock.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<patient>()
            .clock(clock.clone()),
    )
    .await;
    let event = Patient {
        payment_id: "pay-joined".into(),
    };
    let run = client.send(event).await.unwrap().runs[0].1;
    common::eventually(WAIT, "the run to wait", || async {
        common::status(&client, run).await == RunStatus::Waiting
    })
    .await;
    // The sleep was recorded beside the wait, polled after it: its hour runs from
    // the call, not from the confirmation.
    let view = client.run(run).await.unwrap().unwrap();
    assert!(
        view.steps.iter().any(|s| s.key == "nap"),
        "the sleep recorded its wake time: {:?}",
        view.steps
    );
    clock.advance(Duration::from_secs(3600));
    client
        .send(Confirmed {
            payment_id: "pay-joined".into(),
            amount: 3,
        })
        .await
        .unwrap();
    let amount: Option<i64> = client.result(run, WAIT).await.unwrap();
    assert_eq!(amount, Some(3));
}
