use flow::prelude::*;

#[step]
async fn charge_card(ctx: &Ctx, order: i64) -> Result<i64, StepError> {
    let cents = ctx.run("price", || async { Ok::<_, StepError>(order * 100) }).await?;
    Ok(cents)
}

fn main() {}
