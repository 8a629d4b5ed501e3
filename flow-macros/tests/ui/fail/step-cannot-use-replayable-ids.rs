use flow::prelude::*;

#[step]
async fn create_payment(ctx: &Ctx, amount: i64) -> Result<String, StepError> {
    let key = ctx.uuid();
    Ok(format!("{key}: {amount}"))
}

fn main() {}
