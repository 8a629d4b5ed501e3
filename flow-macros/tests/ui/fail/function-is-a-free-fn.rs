use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop/order.placed")]
struct OrderPlaced {
    order: i64,
}

struct Billing;

// A function is registered by its name at module level (`register::<place_order>()`),
// so it must be a free fn, not an associated one.
impl Billing {
    #[function(event = "shop/order.placed")]
    async fn place_order(_ctx: &Ctx, event: OrderPlaced) -> Result<i64, FlowError> {
        Ok(event.order)
    }
}

fn main() {}
