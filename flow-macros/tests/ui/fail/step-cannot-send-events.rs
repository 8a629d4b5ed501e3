use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "app/receipt.requested")]
struct ReceiptRequested {
    payment_id: String,
}

#[step]
async fn charge(ctx: &Ctx, payment_id: String) -> Result<String, StepError> {
    ctx.send_event("receipt", ReceiptRequested { payment_id: payment_id.clone() })
        .await?;
    Ok(payment_id)
}

fn main() {}
