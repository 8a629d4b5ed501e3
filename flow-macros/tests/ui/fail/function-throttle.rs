use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "support/thread.opened")]
struct ThreadOpened {
    customer_id: String,
}

// No period.
#[function(event = "support/thread.opened", throttle(limit = 10))]
async fn a(_ctx: &Ctx, event: ThreadOpened) -> Result<String, FlowError> {
    Ok(event.customer_id)
}

// A period that is not a duration, and a limit of zero.
#[function(event = "support/thread.opened", throttle(limit = 0, period = "soon"))]
async fn b(_ctx: &Ctx, event: ThreadOpened) -> Result<String, FlowError> {
    Ok(event.customer_id)
}

// A misspelt field of the event.
#[function(event = "support/thread.opened", throttle(limit = 1, period = "1s", key = "event.data.customer"))]
async fn c(_ctx: &Ctx, event: ThreadOpened) -> Result<String, FlowError> {
    Ok(event.customer_id)
}

// A bare number.
#[function(event = "support/thread.opened", throttle = 10)]
async fn d(_ctx: &Ctx, event: ThreadOpened) -> Result<String, FlowError> {
    Ok(event.customer_id)
}

// Three throttles.
#[function(
    event = "support/thread.opened",
    throttle(limit = 1, period = "1s"),
    throttle(limit = 2, period = "1m"),
    throttle(limit = 3, period = "1h")
)]
async fn e(_ctx: &Ctx, event: ThreadOpened) -> Result<String, FlowError> {
    Ok(event.customer_id)
}

// An unknown key.
#[function(event = "support/thread.opened", throttle(limit = 3, period = "1h", rate = 2))]
async fn f(_ctx: &Ctx, event: ThreadOpened) -> Result<String, FlowError> {
    Ok(event.customer_id)
}

fn main() {}
