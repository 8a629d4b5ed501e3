// Without `use flow::prelude::*`: `&Ctx` is taken for flow's by the macro, so only
// the error type is unknown, and it is reported once, where the user wrote it.
use serde::{Deserialize, Serialize};

#[derive(flow::Event, Serialize, Deserialize)]
#[event(name = "shop/order.placed")]
struct OrderPlaced {
    order: i64,
}

#[flow::function(event = "shop/order.placed")]
async fn place_order(_ctx: &Ctx, event: OrderPlaced) -> Result<i64, FlowError> {
    Ok(event.order)
}

fn main() {}
