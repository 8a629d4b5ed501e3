// Names that the generated code also uses: handlers called `data`, `ctx` and
// `event`, parameters called `ctx2`, `call`, `event`, `data`, a step called `call`.
use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop/order.placed")]
struct OrderPlaced {
    order: i64,
}

#[step]
async fn call(ctx2: &Ctx, event: i64, data: i64) -> Result<i64, StepError> {
    let _ = ctx2.run_id();
    Ok(event + data)
}

#[step]
async fn lookup(call: &Ctx, ctx: i64) -> Result<i64, StepError> {
    let _ = call.run_id();
    Ok(ctx)
}

#[function(event = "shop/order.placed")]
async fn data(ctx: &Ctx, event: OrderPlaced) -> Result<i64, FlowError> {
    Ok(call(ctx, event.order, 1).await? + lookup(ctx, 2).await?)
}

#[function(event = "shop/order.placed")]
async fn ctx(data: &Ctx, ctx: OrderPlaced) -> Result<i64, FlowError> {
    Ok(call(data, ctx.order, 0).await?)
}

#[function(event = "shop/order.placed")]
async fn event(event: &Ctx, data: OrderPlaced) -> Result<i64, FlowError> {
    Ok(call(event, data.order, 0).await?)
}

fn main() {
    let ids = [
        <data as flow::Function>::DEF.id,
        <ctx as flow::Function>::DEF.id,
        <event as flow::Function>::DEF.id,
    ];
    assert_eq!(ids, ["data", "ctx", "event"]);
}
