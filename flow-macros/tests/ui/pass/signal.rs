use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "app/order.placed")]
struct Placed {
    order: i64,
}

#[derive(Deserialize)]
struct Approval {
    approved: bool,
}

#[function(event = "app/order.placed")]
async fn approve(ctx: &Ctx, event: Placed) -> Result<bool, FlowError> {
    let approval = ctx
        .wait_for_signal::<Approval>("approval", format!("approval/order-{}", event.order))
        .timeout(Duration::from_secs(24 * 3600))
        .await?;
    Ok(approval.is_some_and(|a| a.approved))
}

fn main() {}
