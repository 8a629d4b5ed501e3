// Plain Rust accepts a `pub` fn taking a type private to its module (with a
// `private_interfaces` warning), so flow accepts such a handler too.
#![allow(private_interfaces)]

mod orders {
    use flow::prelude::*;

    #[derive(Event, Serialize, Deserialize)]
    #[event(name = "shop/order.placed")]
    struct OrderPlaced {
        order: i64,
    }

    #[derive(Serialize)]
    struct Receipt {
        order: i64,
    }

    #[function(event = "shop/order.placed")]
    pub async fn place_order(_ctx: &Ctx, event: OrderPlaced) -> Result<i64, FlowError> {
        Ok(Receipt { order: event.order }.order)
    }
}

fn main() {
    let def = <orders::place_order as flow::Function>::DEF;
    assert_eq!((def.id, def.trigger), ("place_order", "shop/order.placed"));
}
