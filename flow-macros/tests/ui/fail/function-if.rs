use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop/order.placed")]
struct OrderPlaced {
    amount: u64,
}

// A misspelt field of the event.
#[function(event = "shop/order.placed", if = "event.data.amont > 1000")]
async fn review(_ctx: &Ctx, event: OrderPlaced) -> Result<u64, FlowError> {
    Ok(event.amount)
}

// Not CEL.
#[function(event = "shop/order.placed", if = "event.data.amount >")]
async fn audit(_ctx: &Ctx, event: OrderPlaced) -> Result<u64, FlowError> {
    Ok(event.amount)
}

// A Rust expression, not a string.
#[function(event = "shop/order.placed", if = event.data.amount > 1000)]
async fn flag(_ctx: &Ctx, event: OrderPlaced) -> Result<u64, FlowError> {
    Ok(event.amount)
}

// Another name for it.
#[function(event = "shop/order.placed", filter = "event.data.amount > 1000")]
async fn hold(_ctx: &Ctx, event: OrderPlaced) -> Result<u64, FlowError> {
    Ok(event.amount)
}

fn main() {}
