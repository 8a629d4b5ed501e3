use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop/order.placed")]
struct OrderPlaced {
    order_id: u64,
}

// A misspelt field of the event.
#[function(event = "shop/order.placed", idempotency = "event.data.ordr_id")]
async fn charge(_ctx: &Ctx, event: OrderPlaced) -> Result<u64, FlowError> {
    Ok(event.order_id)
}

// Not CEL.
#[function(event = "shop/order.placed", idempotency = "event.data.order_id +")]
async fn refund(_ctx: &Ctx, event: OrderPlaced) -> Result<u64, FlowError> {
    Ok(event.order_id)
}

// Not a string.
#[function(event = "shop/order.placed", idempotency = event.data.order_id)]
async fn ship(_ctx: &Ctx, event: OrderPlaced) -> Result<u64, FlowError> {
    Ok(event.order_id)
}

// Given twice.
#[function(event = "shop/order.placed", idempotency = "event.id", idempotency = "event.name")]
async fn pack(_ctx: &Ctx, event: OrderPlaced) -> Result<u64, FlowError> {
    Ok(event.order_id)
}

fn main() {}
