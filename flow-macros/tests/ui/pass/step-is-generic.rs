use flow::prelude::*;

/// Reads a stored document as whatever type the caller asks for: the key does not
/// depend on `T`, and the macro adds the bounds a step's output needs.
#[step]
async fn fetch<T: serde::de::DeserializeOwned>(_ctx: &Ctx, body: String) -> Result<T, StepError> {
    serde_json::from_str(&body).map_err(StepError::fatal)
}

#[derive(Serialize, Deserialize)]
struct Doc {
    n: i64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "app/doc.stored")]
struct DocStored {
    body: String,
}

#[function(event = "app/doc.stored")]
async fn read_doc(ctx: &Ctx, event: DocStored) -> Result<i64, FlowError> {
    let doc: Doc = fetch(ctx, event.body.clone()).await?;
    let count: Vec<i64> = fetch(ctx, "[1, 2]".to_owned()).await?;
    Ok(doc.n + count.len() as i64)
}

fn main() {}
