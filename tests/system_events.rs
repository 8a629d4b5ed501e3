//! flow's system events through real workers: a function triggered by
//! `flow/function.failed`, `.finished` or `.cancelled` runs once per run that ends
//! so, with that run's typed event and how it ended; nothing is stored while no
//! function listens; and no application may send events under flow's names.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use flow::prelude::*;
use flow::system::{FunctionCancelled, FunctionFailed, FunctionFinished};
use flow::{Error, NewEvent, RunStatus};

const WAIT: Duration = Duration::from_secs(60);

/// What the listening functions saw, in the order they ran.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn saw(line: String) {
    SEEN.lock().unwrap().push(line);
}

fn seen() -> Vec<String> {
    let mut seen = SEEN.lock().unwrap().clone();
    seen.sort();
    seen
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/system.order")]
struct Order {
    id: i64,
    decline: bool,
}

#[function(event = "test/system.order", retries = 0)]
async fn charge(_ctx: &Ctx, order: Order) -> Result<i64, FlowError> {
    if order.decline {
        return Err(FlowError::fatal(format!(
            "card declined for order {}",
            order.id
        )));
    }
    Ok(order.id * 100)
}

#[function(event = "flow/function.failed")]
async fn alert(_ctx: &Ctx, failed: FunctionFailed<Order>) -> Result<(), FlowError> {
    saw(format!(
        "failed {} order {}: {} ({:?})",
        failed.function_id, failed.event.data.id, failed.error.message, failed.error.kind
    ));
    Ok(())
}

#[function(event = "flow/function.finished")]
async fn audit(_ctx: &Ctx, finished: FunctionFinished) -> Result<(), FlowError> {
    saw(format!(
        "finished {} {:?} output {}",
        finished.function_id,
        finished.status,
        finished.output.unwrap_or_default()
    ));
    Ok(())
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/system.trial")]
struct Trial {
    user: String,
}

#[function(event = "test/system.trial")]
async fn trial(ctx: &Ctx, _trial: Trial) -> Result<(), FlowError> {
    ctx.sleep("until-the-end", Duration::from_secs(14 * 24 * 3600))
        .await?;
    Ok(())
}

#[function(event = "flow/function.cancelled")]
async fn cancelled(_ctx: &Ctx, cancel: FunctionCancelled<Trial>) -> Result<(), FlowError> {
    saw(format!(
        "cancelled {} for {}: {}",
        cancel.function_id, cancel.event.data.user, cancel.reason
    ));
    Ok(())
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/system.payment")]
struct Payment {
    account: String,
    cents: i64,
}

#[function(event = "test/system.payment", retries = 0, on_failure = refund)]
async fn take_payment(_ctx: &Ctx, payment: Payment) -> Result<(), FlowError> {
    Err(FlowError::fatal(format!(
        "insufficient funds for {} cents",
        payment.cents
    )))
}

/// `take_payment`'s `on_failure`: a plain async fn, typed by the function's event.
async fn refund(_ctx: &Ctx, failed: FunctionFailed<Payment>) -> Result<String, FlowError> {
    let line = format!(
        "refund {} after {}: {}",
        failed.event.data.account, failed.function_id, failed.error.message
    );
    saw(line.clone());
    Ok(line)
}

/// Sends `event` and returns the one run it starts.
async fn start(client: &flow::Client, event: impl flow::IntoEvent) -> flow::RunId {
    client.send(event).await.unwrap().runs[0].1
}

/// Every run in the store, whatever its function or status.
async fn all_runs(store: &flow::AnyStore) -> i64 {
    common::count(
        store,
        "SELECT count(*) FROM flow.runs",
        "SELECT count(*) FROM flow_runs",
    )
    .await
}

async fn runs_of(store: &flow::AnyStore, function: &str) -> i64 {
    common::count(
        store,
        &format!("SELECT count(*) FROM flow.runs WHERE function_id = '{function}' AND status = 'completed'"),
        &format!("SELECT count(*) FROM flow_runs WHERE function_id = '{function}' AND status = 'completed'"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_triggered_by_a_runs_end_see_its_event_and_outcome_once() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<charge>()
            .register::<alert>()
            .register::<audit>(),
    )
    .await;
    let declined = start(
        &client,
        Order {
            id: 7,
            decline: true,
        },
    )
    .await;
    let paid = start(
        &client,
        Order {
            id: 8,
            decline: false,
        },
    )
    .await;
    assert_eq!(
        client.wait(declined, WAIT).await.unwrap().status,
        RunStatus::Failed
    );
    assert_eq!(
        client.wait(paid, WAIT).await.unwrap().status,
        RunStatus::Completed
    );
    // The runs they trigger are created by the statements that ended the two:
    // all there is to count is there now.
    let total = all_runs(&store).await;
    assert_eq!(
        total, 5,
        "two orders; one alert; two audits, and none for the alert's and audits' own ends"
    );
    common::eventually(WAIT, "the alert and both audits to run", || async {
        runs_of(&store, "alert").await == 1 && runs_of(&store, "audit").await == 2
    })
    .await;
    assert_eq!(
        seen(),
        [
            "failed charge order 7: card declined for order 7 (Handler)",
            "finished charge Completed output 800",
            "finished charge Failed output null",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_function_triggered_by_cancels() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<trial>()
            .register::<cancelled>(),
    )
    .await;
    let run = start(&client, Trial { user: "ada".into() }).await;
    common::eventually(WAIT, "the trial to sleep", || async {
        client.run(run).await.unwrap().unwrap().status == RunStatus::Sleeping
    })
    .await;
    client.cancel(run, "ada subscribed").await.unwrap();
    common::eventually(WAIT, "the cancel's function to run", || async {
        runs_of(&store, "cancelled").await == 1
    })
    .await;
    assert_eq!(
        seen(),
        ["cancelled trial for ada: cancelled: ada subscribed"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_stored_while_no_function_listens() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    let _worker = common::spawn_worker(common::worker(&store).register::<charge>()).await;
    for (id, decline) in [(1, false), (2, true)] {
        let run = start(&client, Order { id, decline }).await;
        client.wait(run, WAIT).await.unwrap();
    }
    let stored = common::count(
        &store,
        "SELECT count(*) FROM flow.events WHERE name LIKE 'flow/%'",
        "SELECT count(*) FROM flow_events WHERE name LIKE 'flow/%'",
    )
    .await;
    assert_eq!(stored, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_under_flows_names_are_refused_saying_whose_they_are() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store);
    let forged = NewEvent::raw(
        "flow/function.failed",
        serde_json::json!({ "run_id": "nope" }),
    )
    .unwrap();
    match client.send(forged).await {
        Err(Error::InvalidEvent(message)) => assert!(
            message.contains("`flow/function.failed`") && message.contains("reserved"),
            "{message}"
        ),
        other => panic!("expected the send to be refused, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_runs_with_its_own_functions_failures_only() {
    let (store, _) = common::store().await;
    let client = flow::Client::new(store.clone());
    // Registering the function serves its `on_failure` too.
    let _worker = common::spawn_worker(
        common::worker(&store)
            .register::<take_payment>()
            .register::<charge>(),
    )
    .await;
    let payment = start(
        &client,
        Payment {
            account: "acct-9".into(),
            cents: 4200,
        },
    )
    .await;
    let order = start(
        &client,
        Order {
            id: 3,
            decline: true,
        },
    )
    .await;
    for run in [payment, order] {
        assert_eq!(
            client.wait(run, WAIT).await.unwrap().status,
            RunStatus::Failed
        );
    }
    let total = all_runs(&store).await;
    assert_eq!(
        total, 3,
        "the payment, the order, and one refund: none for the order"
    );
    common::eventually(WAIT, "the refund to run", || async {
        runs_of(&store, "take_payment.on_failure").await == 1
    })
    .await;
    assert_eq!(
        seen(),
        ["refund acct-9 after take_payment: insufficient funds for 4200 cents"]
    );
}
