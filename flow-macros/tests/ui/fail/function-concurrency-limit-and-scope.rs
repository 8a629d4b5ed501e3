use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "support/thread.opened")]
struct ThreadOpened {
    customer_id: String,
}

#[function(event = "support/thread.opened", concurrency(limit = 0))]
async fn zero(_ctx: &Ctx, _event: ThreadOpened) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "support/thread.opened", concurrency(limit = "5", key = "event.data.customer_id"))]
async fn quoted(_ctx: &Ctx, _event: ThreadOpened) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "support/thread.opened", concurrency(key = "event.data.customer_id"))]
async fn no_limit(_ctx: &Ctx, _event: ThreadOpened) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "support/thread.opened", concurrency(limit = 1, scope = account))]
async fn bad_scope(_ctx: &Ctx, _event: ThreadOpened) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "support/thread.opened", concurrency(limit = 1, scope = shared("open ai")))]
async fn bad_scope_name(_ctx: &Ctx, _event: ThreadOpened) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "support/thread.opened", concurrency(limt = 1))]
async fn misspelt(_ctx: &Ctx, _event: ThreadOpened) -> Result<(), FlowError> {
    Ok(())
}

#[function(
    event = "support/thread.opened",
    concurrency(limit = 1, key = "event.data.customer_id"),
    concurrency(limit = 3, key = "event.data.customer_id")
)]
async fn same_rule_twice(_ctx: &Ctx, _event: ThreadOpened) -> Result<(), FlowError> {
    Ok(())
}

#[function(
    event = "support/thread.opened",
    concurrency = 10,
    concurrency(limit = 1, key = "event.data.customer_id"),
    concurrency(limit = 5, scope = shared("llm"))
)]
async fn three_rules(_ctx: &Ctx, _event: ThreadOpened) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "support/thread.opened", concurrency = 200000)]
async fn too_many(_ctx: &Ctx, _event: ThreadOpened) -> Result<(), FlowError> {
    Ok(())
}

fn main() {}
