use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop/order.placed")]
struct OrderPlaced {
    order: i64,
}

#[step]
async fn reserve_stock(_ctx: &Ctx, order: i64) -> Result<i64, StepError> {
    Ok(order)
}

// A step's body runs once and is recorded whole: it cannot start another step.
#[step]
async fn charge_card(ctx: &Ctx, order: i64) -> Result<i64, StepError> {
    let reserved = reserve_stock(ctx, order).await?;
    Ok(reserved * 100)
}

#[function(event = "shop/order.placed")]
async fn place_order(ctx: &Ctx, event: OrderPlaced) -> Result<i64, FlowError> {
    Ok(charge_card(ctx, event.order).await?)
}

fn main() {}
