use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop/order.placed")]
struct OrderPlaced {
    order: i64,
}

#[derive(Serialize, Deserialize)]
struct Receipt {
    total: i64,
}

#[step(retries = 3, backoff(initial = "100ms", max = "1m", factor = 3.0, jitter = 0.1))]
async fn fetch_lines(ctx: &Ctx, order: i64) -> Result<Vec<i64>, StepError> {
    let _ = ctx.run_id();
    Ok(vec![order])
}

#[step(id = "sum-lines")]
async fn sum(_ctx: &Ctx, lines: &[i64]) -> Result<Receipt, std::io::Error> {
    Ok(Receipt { total: lines.iter().sum() })
}

#[function(event = "shop/order.placed", id = "price-order", retries = 5, debounce = "5m")]
async fn price_order(ctx: &Ctx, event: OrderPlaced) -> Result<Receipt, FlowError> {
    let lines = fetch_lines(ctx, event.order).await?;
    let receipt = sum(ctx, &lines).await?;
    let doubled = ctx.run("double", || async { Ok::<_, StepError>(receipt.total * 2) }).await?;
    Ok(Receipt { total: doubled })
}

fn main() {
    let def = <price_order as flow::Function>::DEF;
    assert_eq!((def.id, def.trigger, def.retries), ("price-order", "shop/order.placed", 5));
}
