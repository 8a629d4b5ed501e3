use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "support/thread.opened")]
#[serde(rename_all = "camelCase")]
struct ThreadOpened {
    customer_id: String,
    plan: String,
    r#type: String,
}

#[function(
    event = "support/thread.opened",
    concurrency(limit = 2, key = "event.data.customerId"),
    concurrency(limit = 20, key = "event.data.plan + '/' + event.data.type", scope = shared("llm"))
)]
async fn classify(_ctx: &Ctx, event: ThreadOpened) -> Result<String, FlowError> {
    Ok(event.customer_id)
}

#[function(event = "support/thread.opened", concurrency = 3)]
async fn archive(_ctx: &Ctx, _event: ThreadOpened) -> Result<(), FlowError> {
    Ok(())
}

#[function(
    event = "support/thread.opened",
    concurrency(limit = 1, scope = fn, key = "has(event.data.plan) ? event.name : 'none'")
)]
async fn audit(_ctx: &Ctx, _event: ThreadOpened) -> Result<(), FlowError> {
    Ok(())
}

fn main() {
    use flow::flow_control::{Concurrency, ConcurrencyScope};
    assert_eq!(
        <classify as flow::Function>::DEF.concurrency,
        [
            Concurrency {
                limit: 2,
                key: Some("event.data.customerId"),
                scope: ConcurrencyScope::Function
            },
            Concurrency {
                limit: 20,
                key: Some("event.data.plan + '/' + event.data.type"),
                scope: ConcurrencyScope::Shared("llm")
            },
        ]
    );
    assert_eq!(
        <archive as flow::Function>::DEF.concurrency,
        [Concurrency { limit: 3, key: None, scope: ConcurrencyScope::Function }]
    );
    assert_eq!(<audit as flow::Function>::DEF.concurrency[0].limit, 1);
}
