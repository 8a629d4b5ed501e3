//! Sending events as a step: the events start their runs, a replay returns the
//! same ids and sends nothing again, and events that cannot be sent are the
//! step's error, recorded.

mod common;

use std::time::Duration;

use flow::prelude::*;
use flow::{EventId, NewEvent, RunStatus, StepKind};

const WAIT: Duration = Duration::from_secs(60);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/send.order")]
struct Order {
    id: i64,
    parcels: i64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/send.parcel")]
struct Parcel {
    order: i64,
    parcel: i64,
}

/// Sends one event per parcel, then sleeps, so that it replays the send.
#[function(event = "test/send.order")]
async fn fan_out(ctx: &Ctx, order: Order) -> Result<Vec<EventId>, FlowError> {
    let parcels: Vec<Parcel> = (0..order.parcels)
        .map(|parcel| Parcel {
            order: order.id,
            parcel,
        })
        .collect();
    let ids = ctx.send_event("ship", parcels).await?;
    ctx.sleep("settle", Duration::from_millis(200)).await?;
    Ok(ids)
}

#[function(event = "test/send.parcel")]
async fn ship_parcel(_ctx: &Ctx, parcel: Parcel) -> Result<i64, FlowError> {
    Ok(parcel.order * 100 + parcel.parcel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_as_a_step_start_their_runs_once_across_replays() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<fan_out>()
            .register::<ship_parcel>(),
    )
    .await;
    let run = client.send(Order { id: 7, parcels: 3 }).await.unwrap().runs[0].1;
    let ids: Vec<EventId> = client.result(run, WAIT).await.unwrap();
    assert_eq!(ids.len(), 3);
    let view = client.run(run).await.unwrap().unwrap();
    let kinds: Vec<_> = view
        .steps
        .iter()
        .map(|s| (s.key.as_str(), s.kind))
        .collect();
    assert_eq!(
        kinds,
        [("ship", StepKind::SendEvent), ("settle", StepKind::Sleep)]
    );
    common::eventually(WAIT, "every parcel run to complete", || async {
        common::count(
            &store,
            "SELECT count(*) FROM flow.runs WHERE function_id = 'ship_parcel' AND status = 'completed'",
            "SELECT count(*) FROM flow_runs WHERE function_id = 'ship_parcel' AND status = 'completed'",
        )
        .await
            == 3
    })
    .await;
    // The replay after the sleep sent nothing: one run per id, started by it.
    let started = common::count(
        &store,
        "SELECT count(*) FROM flow.runs WHERE function_id = 'ship_parcel'",
        "SELECT count(*) FROM flow_runs WHERE function_id = 'ship_parcel'",
    )
    .await;
    assert_eq!(started, 3);
    let events = common::count(
        &store,
        "SELECT count(*) FROM flow.events WHERE name = 'test/send.parcel'",
        "SELECT count(*) FROM flow_events WHERE name = 'test/send.parcel'",
    )
    .await;
    assert_eq!(events, 3);
    for id in &ids {
        let runs = common::count(
            &store,
            &format!("SELECT count(*) FROM flow.runs WHERE event_id = '{id}'"),
            &format!("SELECT count(*) FROM flow_runs WHERE event_id = '{id}'"),
        )
        .await;
        assert_eq!(
            runs, 1,
            "the recorded id {id} is the event that started a run"
        );
    }
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/send.bad")]
struct Bad {}

/// Sends an event whose data the database cannot store, and returns the error.
#[function(event = "test/send.bad")]
async fn send_unstorable(ctx: &Ctx, _event: Bad) -> Result<String, FlowError> {
    let bad = NewEvent::raw("test/send.never", serde_json::json!({ "note": "a\u{0}b" }))?;
    match ctx.send_event("bad", bad).await {
        Ok(_) => Ok("sent".into()),
        Err(e) => Ok(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_cannot_be_sent_are_the_steps_recorded_error() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(common::worker(&store).register::<send_unstorable>()).await;
    let run = client.send(Bad {}).await.unwrap().runs[0].1;
    let message: String = client.result(run, WAIT).await.unwrap();
    assert!(
        message.contains("cannot send") && message.contains("NUL"),
        "{message}"
    );
    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(view.status, RunStatus::Completed);
    assert_eq!(view.steps[0].kind, StepKind::SendEvent);
    assert!(view.steps[0].error.is_some(), "the error is recorded");
    let events = common::count(
        &store,
        "SELECT count(*) FROM flow.events WHERE name = 'test/send.never'",
        "SELECT count(*) FROM flow_events WHERE name = 'test/send.never'",
    )
    .await;
    assert_eq!(events, 0);
}
