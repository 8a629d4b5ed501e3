use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "app/payment.confirmed")]
struct Confirmed {
    payment_id: String,
}

#[step]
async fn charge(ctx: &Ctx, payment_id: String) -> Result<String, StepError> {
    let _ = ctx.wait_for_event::<Confirmed>("confirmation").await?;
    Ok(payment_id)
}

fn main() {}
