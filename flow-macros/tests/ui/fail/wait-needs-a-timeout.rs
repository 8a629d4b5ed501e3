use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "app/payment.charged")]
struct Charged {
    payment_id: String,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "app/payment.confirmed")]
struct Confirmed {
    payment_id: String,
}

#[function(event = "app/payment.charged")]
async fn confirm(ctx: &Ctx, event: Charged) -> Result<bool, FlowError> {
    let confirmed = ctx
        .wait_for_event::<Confirmed>("confirmation")
        .matching(|f| f.payment_id, event.payment_id)
        .await?;
    Ok(confirmed.is_some())
}

fn main() {}
