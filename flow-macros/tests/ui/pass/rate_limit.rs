use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "alerts/signal.raised")]
#[serde(rename_all = "camelCase")]
struct SignalRaised {
    user_id: String,
}

#[function(
    event = "alerts/signal.raised",
    rate_limit(limit = 1, period = "4h", key = "event.data.userId")
)]
async fn alert(_ctx: &Ctx, event: SignalRaised) -> Result<String, FlowError> {
    Ok(event.user_id)
}

#[function(event = "alerts/signal.raised", rate_limit(period = "1s", limit = 100))]
async fn firehose(_ctx: &Ctx, _event: SignalRaised) -> Result<(), FlowError> {
    Ok(())
}

fn main() {
    use flow::catalog::RateLimit;
    use std::time::Duration;
    assert_eq!(
        <alert as flow::Function>::DEF.rate_limit,
        Some(RateLimit {
            limit: 1,
            period: Duration::from_secs(4 * 3600),
            key: Some("event.data.userId"),
        })
    );
    assert_eq!(
        <firehose as flow::Function>::DEF.rate_limit,
        Some(RateLimit { limit: 100, period: Duration::from_secs(1), key: None })
    );
}
