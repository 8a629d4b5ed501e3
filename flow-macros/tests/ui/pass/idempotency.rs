use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop/order.placed")]
#[serde(rename_all = "camelCase")]
struct OrderPlaced {
    order_id: u64,
    customer_id: String,
}

#[function(event = "shop/order.placed", idempotency = "event.data.orderId")]
async fn charge(_ctx: &Ctx, event: OrderPlaced) -> Result<u64, FlowError> {
    Ok(event.order_id)
}

#[function(
    event = "shop/order.placed",
    idempotency = "event.data.customerId + ':' + string(event.data.orderId)",
    concurrency(limit = 1, key = "event.data.customerId")
)]
async fn receipt(_ctx: &Ctx, event: OrderPlaced) -> Result<String, FlowError> {
    Ok(event.customer_id)
}

fn main() {
    assert_eq!(<charge as flow::Function>::DEF.idempotency, Some("event.data.orderId"));
    assert_eq!(
        <receipt as flow::Function>::DEF.idempotency,
        Some("event.data.customerId + ':' + string(event.data.orderId)")
    );
}
