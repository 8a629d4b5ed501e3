use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop/order.placed")]
struct OrderPlaced {
    order_id: i64,
}

#[function(event = "shop/order.placed", timeouts(start = "10", finish = "2h"))]
async fn fulfil_order(ctx: &Ctx, event: OrderPlaced) -> Result<i64, FlowError> {
    ctx.sleep("pack", Duration::from_secs(60)).await?;
    Ok(event.order_id)
}

#[function(event = "shop/order.placed", id = "notify-order", timeouts(finish = "30s"))]
async fn notify_order(_ctx: &Ctx, event: OrderPlaced) -> Result<i64, FlowError> {
    Ok(event.order_id)
}

fn main() {
    let def = <fulfil_order as flow::Function>::DEF;
    assert_eq!(def.timeouts.start, Some(Duration::from_secs(600)));
    assert_eq!(def.timeouts.finish, Some(Duration::from_secs(7200)));
    let def = <notify_order as flow::Function>::DEF;
    assert_eq!((def.timeouts.start, def.timeouts.finish), (None, Some(Duration::from_secs(30))));
}
