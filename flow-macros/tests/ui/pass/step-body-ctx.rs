use flow::prelude::*;
use flow::StepCtx;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop/order.placed")]
struct OrderPlaced {
    order: i64,
}

/// A helper a step body hands its `ctx` to takes `&StepCtx`.
fn audit(ctx: &StepCtx, what: &str) -> String {
    format!("{} {} {what}", ctx.function_id(), ctx.run_id())
}

#[step]
async fn charge_card(ctx: &Ctx, order: i64) -> Result<String, StepError> {
    // Short waits inside a step are plain tokio sleeps; the clock is read directly.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let _at = std::time::SystemTime::now();
    Ok(audit(ctx, &order.to_string()))
}

#[step]
async fn ship(_ctx: &Ctx, order: i64) -> Result<i64, StepError> {
    Ok(order)
}

#[function(event = "shop/order.placed")]
async fn place_order(ctx: &Ctx, event: OrderPlaced) -> Result<String, FlowError> {
    // Steps start from the handler's `ctx`, a reference to it, or a clone of it.
    let charged = charge_card(ctx, event.order).await?;
    ship(&ctx, event.order).await?;
    let owned = ctx.clone();
    let shipped = tokio::spawn(async move { ship(&owned, 2).await }).await;
    let _ = shipped;
    Ok(charged)
}

fn main() {}
