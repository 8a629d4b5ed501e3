use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "img/resize.requested")]
struct Resize {
    width: u32,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "img/crop.requested")]
struct Crop {
    x: u32,
}

#[function(event = "img/resize.requested")]
async fn thumbnail(_ctx: &Ctx, resize: Resize) -> Result<String, FlowError> {
    Ok(format!("{}.png", resize.width))
}

#[function(event = "img/crop.requested")]
async fn crop(ctx: &Ctx, crop: Crop) -> Result<String, FlowError> {
    let path = ctx.invoke("thumb", thumbnail::with(crop)).await?;
    Ok(path)
}

fn main() {}
