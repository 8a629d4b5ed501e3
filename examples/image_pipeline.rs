//! Three resizes of an uploaded image in parallel, each a run of one reusable
//! `thumbnail` function started with `ctx.invoke`, then one save. The upload's run
//! holds no worker while its thumbnails are made; each thumbnail is a run of its
//! own, with its own retries, visible on its own. Without DATABASE_URL the data
//! goes to ./flow.db (SQLite).
//!
//! ```sh
//! cargo run --example image_pipeline
//! ```

use std::time::Duration;

use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "media/image.uploaded")]
struct ImageUploaded {
    image: String,
    bytes: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "media/thumbnail.requested")]
struct ThumbnailRequested {
    image: String,
    bytes: u64,
    width: u32,
}

#[derive(Serialize, Deserialize)]
struct Thumbnail {
    path: String,
    bytes: u64,
}

#[step(retries = 3)]
async fn resize(_ctx: &Ctx, image: &str, bytes: u64, width: u32) -> Result<Thumbnail, StepError> {
    // Real image work goes here; the size shrinks with the square of the width.
    let scale = f64::from(width) / 4000.0;
    Ok(Thumbnail {
        path: format!("{image}-{width}w.jpg"),
        bytes: (bytes as f64 * scale * scale).ceil() as u64,
    })
}

/// Reusable: invoked by the pipeline below, or triggered by its own event.
#[function(event = "media/thumbnail.requested")]
async fn thumbnail(ctx: &Ctx, request: ThumbnailRequested) -> Result<Thumbnail, FlowError> {
    Ok(resize(ctx, &request.image, request.bytes, request.width).await?)
}

#[step]
async fn save(_ctx: &Ctx, image: &str, paths: Vec<String>) -> Result<String, StepError> {
    Ok(format!("saved {} thumbnails of {image}", paths.len()))
}

#[function(event = "media/image.uploaded")]
async fn image_pipeline(ctx: &Ctx, upload: ImageUploaded) -> Result<String, FlowError> {
    let invoke = |width| {
        ctx.invoke(
            "thumbnail",
            thumbnail::with(ThumbnailRequested {
                image: upload.image.clone(),
                bytes: upload.bytes,
                width,
            }),
        )
        .timeout(Duration::from_secs(600))
    };
    // All three start together: the run parks once, on all of them.
    let (small, medium, large) = tokio::join!(invoke(160), invoke(640), invoke(1280));
    let thumbnails = [small?, medium?, large?];
    let total: u64 = thumbnails.iter().map(|t| t.bytes).sum();
    let paths = thumbnails.into_iter().map(|t| t.path).collect();
    let saved = save(ctx, &upload.image, paths).await?;
    Ok(format!("{saved} ({total} bytes)"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "flow_core=warn".into()),
        )
        .init();

    let worker = flow::Worker::from_env().await?;
    worker.announce().await?;
    let worker = worker.spawn();
    let client = flow::Client::from_env().await?;

    let receipt = client
        .send(ImageUploaded {
            image: "beach".into(),
            bytes: 4_800_000,
        })
        .await?;
    println!("sent 1 upload, which started {} run", receipt.runs.len());
    let upload = client
        .wait(receipt.runs[0].1, Duration::from_secs(60))
        .await?;
    println!(
        "upload run {}: {}",
        upload.status,
        upload.output.clone().unwrap_or_default()
    );
    // Each invoke step recorded its child run; read the children back.
    for step in upload
        .steps
        .iter()
        .filter(|s| s.kind == flow::StepKind::Invoke)
    {
        let output = step.output.clone().unwrap_or_default();
        let child: flow::RunId = serde_json::from_value(output["run_id"].clone())?;
        let run = client
            .run(child)
            .await?
            .ok_or("an invoked run is missing")?;
        println!(
            "  {:<12} -> run of `{}` {}: {}",
            step.key,
            run.function_id,
            run.status,
            run.output.map(|o| o["path"].clone()).unwrap_or_default()
        );
    }

    let report = worker.stop().await?;
    println!(
        "worker stopped: {} runs finished, {} parks",
        report.finished, report.parked
    );
    Ok(())
}
