use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "img/resize.requested")]
struct Resize {
    width: u32,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "img/upload.done")]
struct Upload {
    width: u32,
}

#[function(event = "img/resize.requested")]
async fn thumbnail(_ctx: &Ctx, resize: Resize) -> Result<String, FlowError> {
    Ok(format!("{}.png", resize.width))
}

#[function(event = "img/upload.done")]
async fn upload(ctx: &Ctx, upload: Upload) -> Result<u64, FlowError> {
    let bytes: u64 = ctx
        .invoke("thumb", thumbnail::with(Resize { width: upload.width }))
        .await?;
    Ok(bytes)
}

fn main() {}
