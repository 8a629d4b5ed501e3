use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "support/thread.opened")]
struct ThreadOpened {
    customer_id: String,
}

#[function(
    event = "support/thread.opened",
    throttle(limit = 10, period = "1m", burst = 5, key = "event.data.customer_id"),
    throttle(limit = 1000, period = "1h", scope = shared("llm")),
    concurrency(limit = 2, key = "event.data.customer_id")
)]
async fn classify(_ctx: &Ctx, event: ThreadOpened) -> Result<String, FlowError> {
    Ok(event.customer_id)
}

fn main() {
    use flow::flow_control::{ConcurrencyScope, Throttle};
    use std::time::Duration;
    assert_eq!(
        <classify as flow::Function>::DEF.throttle,
        [
            Throttle {
                limit: 10,
                period: Duration::from_secs(60),
                burst: 5,
                key: Some("event.data.customer_id"),
                scope: ConcurrencyScope::Function,
            },
            Throttle {
                limit: 1000,
                period: Duration::from_secs(3600),
                burst: 0,
                key: None,
                scope: ConcurrencyScope::Shared("llm"),
            },
        ]
    );
}
