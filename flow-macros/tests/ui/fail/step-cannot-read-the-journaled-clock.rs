use flow::prelude::*;

#[step]
async fn stamp_invoice(ctx: &Ctx, invoice: i64) -> Result<String, StepError> {
    let at = ctx.now().await;
    Ok(format!("{invoice} at {at}"))
}

fn main() {}
