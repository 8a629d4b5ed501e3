use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop/order.placed")]
struct OrderPlaced {
    amount: u64,
    country: String,
}

#[function(event = "shop/order.placed", if = "event.data.amount > 1000 && event.data.country != 'NZ'")]
async fn review(_ctx: &Ctx, event: OrderPlaced) -> Result<u64, FlowError> {
    Ok(event.amount)
}

fn main() {
    assert_eq!(
        <review as flow::Function>::DEF.filter,
        Some("event.data.amount > 1000 && event.data.country != 'NZ'")
    );
}
