// A function invokes another, defined in another module with a private event
// type, and gets its typed output.
#![allow(private_interfaces)]

use flow::prelude::*;

mod images {
    use flow::prelude::*;

    #[derive(Event, Serialize, Deserialize)]
    #[event(name = "img/resize.requested")]
    pub struct Resize {
        pub width: u32,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Thumbnail {
        pub path: String,
    }

    #[function(event = "img/resize.requested")]
    pub async fn thumbnail(_ctx: &Ctx, resize: Resize) -> Result<Thumbnail, FlowError> {
        Ok(Thumbnail {
            path: format!("{}.png", resize.width),
        })
    }

    #[derive(Event, Serialize, Deserialize)]
    #[event(name = "img/internal.job")]
    struct Internal {
        n: u32,
    }

    #[function(event = "img/internal.job")]
    pub async fn internal(_ctx: &Ctx, job: Internal) -> Result<u32, FlowError> {
        Ok(job.n)
    }
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "img/upload.done")]
struct Upload {
    width: u32,
}

#[function(event = "img/upload.done")]
async fn upload(ctx: &Ctx, upload: Upload) -> Result<String, FlowError> {
    let thumb = ctx
        .invoke("thumb", images::thumbnail::with(images::Resize { width: upload.width }))
        .timeout(Duration::from_secs(600))
        .await?;
    Ok(thumb.path)
}

fn main() {}
