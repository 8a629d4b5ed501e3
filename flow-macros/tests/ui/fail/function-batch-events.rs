use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "logs/api.called")]
struct ApiCalled {
    user_id: String,
}

#[function(event = "logs/api.called", batch_events)]
async fn bare(_ctx: &Ctx, _events: Vec<ApiCalled>) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "logs/api.called", batch_events(max_size = 100))]
async fn no_timeout(_ctx: &Ctx, _events: Vec<ApiCalled>) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "logs/api.called", batch_events(max_size = 0, timeout = "5s"))]
async fn empty(_ctx: &Ctx, _events: Vec<ApiCalled>) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "logs/api.called", batch_events(max_size = 10, timeout = "8d"))]
async fn too_long(_ctx: &Ctx, _events: Vec<ApiCalled>) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "logs/api.called", batch_events(size = 10, timeout = "5s"))]
async fn size(_ctx: &Ctx, _events: Vec<ApiCalled>) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "logs/api.called", batch_events(max_size = 10, timeout = "5s"))]
async fn one_event(_ctx: &Ctx, _event: ApiCalled) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "logs/api.called")]
async fn vec_without_batch(_ctx: &Ctx, _events: Vec<ApiCalled>) -> Result<(), FlowError> {
    Ok(())
}

#[function(
    event = "logs/api.called",
    batch_events(max_size = 10, timeout = "5s", key = "event.data.user")
)]
async fn misspelt_key(_ctx: &Ctx, _events: Vec<ApiCalled>) -> Result<(), FlowError> {
    Ok(())
}

#[function(
    event = "logs/api.called",
    batch_events(max_size = 10, timeout = "5s"),
    debounce(period = "1m")
)]
async fn both(_ctx: &Ctx, _events: Vec<ApiCalled>) -> Result<(), FlowError> {
    Ok(())
}

#[function(
    event = "logs/api.called",
    batch_events(max_size = 10, timeout = "5s"),
    idempotency = "event.data.user_id",
    rate_limit(limit = 1, period = "1h"),
    cancel_on(event = "logs/api.called", match = user_id)
)]
async fn conflicts(_ctx: &Ctx, _events: Vec<ApiCalled>) -> Result<(), FlowError> {
    Ok(())
}

#[function(cron = "0 9 * * 1", batch_events(max_size = 10, timeout = "5s"))]
async fn ticks(_ctx: &Ctx, _ticks: Vec<CronTick>) -> Result<(), FlowError> {
    Ok(())
}

fn main() {}
