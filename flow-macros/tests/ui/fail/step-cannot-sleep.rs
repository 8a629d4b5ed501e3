use flow::prelude::*;

#[step]
async fn send_reminder(ctx: &Ctx, email: String) -> Result<String, StepError> {
    ctx.sleep("grace-period", Duration::from_secs(3600)).await?;
    Ok(email)
}

fn main() {}
