use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "alerts/signal.raised")]
struct SignalRaised {
    user_id: String,
}

#[function(event = "alerts/signal.raised", rate_limit(limit = 1))]
async fn no_period(_ctx: &Ctx, _event: SignalRaised) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "alerts/signal.raised", rate_limit(limit = 1, period = "500ms"))]
async fn too_short(_ctx: &Ctx, _event: SignalRaised) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "alerts/signal.raised", rate_limit(limit = 0, period = "1h"))]
async fn zero(_ctx: &Ctx, _event: SignalRaised) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "alerts/signal.raised", rate_limit(limit = 1, period = "1h", key = "event.data.user"))]
async fn misspelt_field(_ctx: &Ctx, _event: SignalRaised) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "alerts/signal.raised", rate_limit(limit = 1, period = "1h", burst = 2))]
async fn burst(_ctx: &Ctx, _event: SignalRaised) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "alerts/signal.raised", rate_limit = 5)]
async fn bare(_ctx: &Ctx, _event: SignalRaised) -> Result<(), FlowError> {
    Ok(())
}

#[function(
    event = "alerts/signal.raised",
    rate_limit(limit = 1, period = "1h"),
    rate_limit(limit = 10, period = "1d")
)]
async fn twice(_ctx: &Ctx, _event: SignalRaised) -> Result<(), FlowError> {
    Ok(())
}

fn main() {}
