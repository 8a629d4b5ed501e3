use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "img/resize.requested")]
struct Resize {
    width: u32,
}

#[function(event = "img/resize.requested")]
async fn thumbnail(_ctx: &Ctx, resize: Resize) -> Result<String, FlowError> {
    Ok(format!("{}.png", resize.width))
}

#[step]
async fn prepare(ctx: &Ctx, width: u32) -> Result<String, StepError> {
    let path = ctx.invoke("thumb", thumbnail::with(Resize { width })).await?;
    Ok(path)
}

fn main() {}
