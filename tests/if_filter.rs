//! `if = "<CEL>"`: only events for which the condition is true start a run of the
//! function, decided when the event is sent. Other functions the event triggers
//! are not affected; a filtered event takes no singleton key; a condition that
//! cannot be evaluated (or is not a boolean) starts the run and says why.

mod common;

use flow::NewEvent;
use flow::catalog::SkipReason;
use flow::prelude::*;
use serde_json::json;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/if.order")]
struct Order {
    amount: u64,
    customer: String,
}

#[function(event = "test/if.order", if = "event.data.amount > 100")]
async fn review(_ctx: &Ctx, order: Order) -> Result<u64, FlowError> {
    Ok(order.amount)
}

#[function(
    event = "test/if.order",
    if = "event.data.customer != 'test'",
    singleton(key = "event.data.customer", mode = skip)
)]
async fn notify(_ctx: &Ctx, order: Order) -> Result<(), FlowError> {
    let _ = order;
    Ok(())
}

/// No condition: every order.
#[function(event = "test/if.order")]
async fn record(_ctx: &Ctx, _order: Order) -> Result<(), FlowError> {
    Ok(())
}

async fn client() -> flow::Client {
    let (store, _) = common::store().await;
    common::worker(&store)
        .register::<review>()
        .register::<notify>()
        .register::<record>()
        .build()
        .unwrap()
        .announce()
        .await
        .unwrap();
    flow::Client::new(store)
}

async fn functions_of(client: &flow::Client, receipt: &flow::SendReceipt) -> Vec<String> {
    let mut functions = Vec::new();
    for (_, run) in &receipt.runs {
        functions.push(client.run(*run).await.unwrap().unwrap().function_id);
    }
    functions.sort();
    functions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_events_that_match_start_a_run() {
    let client = client().await;
    let order = |amount, customer: &str| Order {
        amount,
        customer: customer.into(),
    };

    let small = client.send(order(50, "a")).await.unwrap();
    assert_eq!(functions_of(&client, &small).await, ["notify", "record"]);
    assert_eq!(small.skipped.len(), 1);
    assert_eq!(small.skipped[0].function, "review");
    assert_eq!(small.skipped[0].reason, SkipReason::Filtered);
    assert!(small.skipped[0].reason.to_string().contains("`if`"));
    assert!(small.unmatched.is_empty());

    let large = client.send(order(500, "b")).await.unwrap();
    assert_eq!(
        functions_of(&client, &large).await,
        ["notify", "record", "review"]
    );
    assert!(large.skipped.is_empty());

    // A filtered event takes no singleton key: the test customer's event starts
    // no `notify`, and a real one of the same key still can.
    let test = client.send(order(500, "test")).await.unwrap();
    assert_eq!(functions_of(&client, &test).await, ["record", "review"]);
    assert_eq!(
        test.skipped
            .iter()
            .map(|s| (s.function.as_str(), &s.reason))
            .collect::<Vec<_>>(),
        [("notify", &SkipReason::Filtered)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_condition_that_cannot_be_evaluated_starts_the_run_and_says_why() {
    let client = client().await;
    // A producer without the Rust type: no amount, and a customer that is a number.
    let event = NewEvent::raw("test/if.order", json!({"customer": 7})).unwrap();
    let receipt = client.send(event).await.unwrap();
    assert_eq!(
        functions_of(&client, &receipt).await,
        ["notify", "record", "review"]
    );
    let problems: Vec<&str> = receipt
        .unevaluated
        .iter()
        .filter(|u| u.function == "review")
        .map(|u| u.problem.as_str())
        .collect();
    assert_eq!(problems.len(), 1, "{:?}", receipt.unevaluated);
    assert!(
        problems[0].contains("if not applied") && problems[0].contains("event.data.amount"),
        "{}",
        problems[0]
    );
}
