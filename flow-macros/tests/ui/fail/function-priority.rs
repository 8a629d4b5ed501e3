use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "support/thread.opened")]
struct ThreadOpened {
    plan: String,
}

// A misspelt field of the event.
#[function(event = "support/thread.opened", priority = "event.data.plna == 'paid' ? 60 : 0")]
async fn classify(_ctx: &Ctx, event: ThreadOpened) -> Result<String, FlowError> {
    Ok(event.plan)
}

// A variable other than `event`.
#[function(event = "support/thread.opened", priority = "customer.tier * 10")]
async fn escalate(_ctx: &Ctx, event: ThreadOpened) -> Result<String, FlowError> {
    Ok(event.plan)
}

// A number, not an expression in a string.
#[function(event = "support/thread.opened", priority = 60)]
async fn archive(_ctx: &Ctx, event: ThreadOpened) -> Result<String, FlowError> {
    Ok(event.plan)
}

fn main() {}
