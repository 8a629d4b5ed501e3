use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "app/order.placed")]
struct OrderPlaced {
    order: i64,
}

#[function(event = "app/order.placed")]
async fn notify(ctx: &Ctx, event: OrderPlaced) -> Result<(), FlowError> {
    ctx.send_event("notify", event.order).await?;
    Ok(())
}

fn main() {}
