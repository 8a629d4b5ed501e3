use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "support/thread.opened")]
struct ThreadOpened {
    plan: String,
    waited_minutes: i64,
}

#[function(
    event = "support/thread.opened",
    priority = "event.data.plan == 'paid' ? 120 : 0",
    idempotency = "event.id"
)]
async fn classify(_ctx: &Ctx, event: ThreadOpened) -> Result<String, FlowError> {
    Ok(event.plan)
}

#[function(event = "support/thread.opened", priority = "event.data.waited_minutes * 60")]
async fn escalate(_ctx: &Ctx, event: ThreadOpened) -> Result<i64, FlowError> {
    Ok(event.waited_minutes)
}

fn main() {
    assert_eq!(
        <classify as flow::Function>::DEF.priority,
        Some("event.data.plan == 'paid' ? 120 : 0")
    );
    assert_eq!(<escalate as flow::Function>::DEF.idempotency, None);
}
