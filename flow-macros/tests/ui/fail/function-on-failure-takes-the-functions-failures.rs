use flow::prelude::*;
use flow::system::FunctionFailed;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop/order.placed")]
struct OrderPlaced {
    order: i64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop/order.shipped")]
struct OrderShipped {
    order: i64,
}

async fn refund(_ctx: &Ctx, failed: FunctionFailed<OrderShipped>) -> Result<(), FlowError> {
    let _ = failed.event.data.order;
    Ok(())
}

#[function(event = "shop/order.placed", on_failure = refund)]
async fn price_order(_ctx: &Ctx, event: OrderPlaced) -> Result<i64, FlowError> {
    Ok(event.order)
}

fn main() {
    let _ = <price_order as flow::Function>::DEF;
}
