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
    amount: i64,
}

#[function(event = "app/payment.charged")]
async fn confirm(ctx: &Ctx, event: Charged) -> Result<bool, FlowError> {
    let confirmed = ctx
        .wait_for_event::<Confirmed>("confirmation")
        .matching(|f| f.payment_id, 42)
        .timeout(Duration::from_secs(3600))
        .await?;
    Ok(confirmed.is_some())
}

fn main() {}
