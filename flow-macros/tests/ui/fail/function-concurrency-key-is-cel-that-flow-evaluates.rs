use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "support/thread.opened")]
struct ThreadOpened {
    customer_id: String,
}

#[function(event = "support/thread.opened", concurrency(limit = 1, key = "event.data.(customer_id"))]
async fn unbalanced(_ctx: &Ctx, _event: ThreadOpened) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "support/thread.opened", concurrency(limit = 1, key = "customer_id"))]
async fn bare_name(_ctx: &Ctx, _event: ThreadOpened) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "support/thread.opened", concurrency(limit = 1, key = "event.customer_id"))]
async fn outside_data(_ctx: &Ctx, _event: ThreadOpened) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "support/thread.opened", concurrency(limit = 1, key = "lowerAscii(event.data.customer_id)"))]
async fn unknown_function(_ctx: &Ctx, _event: ThreadOpened) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "support/thread.opened", concurrency(limit = 1, key = customer_id))]
async fn not_a_string(_ctx: &Ctx, _event: ThreadOpened) -> Result<(), FlowError> {
    Ok(())
}

fn main() {}
