use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "docs/doc.edited")]
struct DocEdited {
    doc_id: String,
}

#[function(event = "docs/doc.edited", debounce = "5m")]
async fn bare(_ctx: &Ctx, _event: DocEdited) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "docs/doc.edited", debounce(key = "event.data.doc_id"))]
async fn no_period(_ctx: &Ctx, _event: DocEdited) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "docs/doc.edited", debounce(period = "5m", timeout = "1m"))]
async fn timeout_shorter(_ctx: &Ctx, _event: DocEdited) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "docs/doc.edited", debounce(period = "500ms"))]
async fn too_short(_ctx: &Ctx, _event: DocEdited) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "docs/doc.edited", debounce(period = "5m", events = first))]
async fn first(_ctx: &Ctx, _event: DocEdited) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "docs/doc.edited", debounce(period = "5m"))]
async fn vec_of_last(_ctx: &Ctx, _events: Vec<DocEdited>) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "docs/doc.edited", debounce(period = "5m", events = all))]
async fn one_of_all(_ctx: &Ctx, _event: DocEdited) -> Result<(), FlowError> {
    Ok(())
}

#[function(
    event = "docs/doc.edited",
    debounce(period = "5m", key = "event.data.doc"),
)]
async fn misspelt_key(_ctx: &Ctx, _event: DocEdited) -> Result<(), FlowError> {
    Ok(())
}

#[function(
    event = "docs/doc.edited",
    debounce(period = "5m"),
    singleton(mode = skip),
    priority = "60"
)]
async fn conflicts(_ctx: &Ctx, _event: DocEdited) -> Result<(), FlowError> {
    Ok(())
}

fn main() {}
