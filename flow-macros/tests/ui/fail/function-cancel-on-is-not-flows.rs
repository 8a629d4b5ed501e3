use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop/order.placed")]
#[serde(rename_all = "camelCase")]
struct OrderPlaced {
    order_id: i64,
    customer: String,
}

#[function(
    event = "shop/order.placed",
    cancel_on(event = "flow/function.failed", match = order_id),
    cancel_on(event = "shop/customer.deleted", match = "customer")
)]
async fn fulfil_order(ctx: &Ctx, event: OrderPlaced) -> Result<i64, FlowError> {
    ctx.sleep("pack", Duration::from_secs(60)).await?;
    Ok(event.order_id)
}

fn main() {
    let def = <fulfil_order as flow::Function>::DEF;
    assert_eq!(
        def.cancel_on,
        [
            flow::CancelOn { event: "shop/order.withdrawn", field: "orderId" },
            flow::CancelOn { event: "shop/customer.deleted", field: "customer" },
        ]
    );
}
