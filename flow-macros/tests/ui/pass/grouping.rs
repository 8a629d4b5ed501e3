use std::time::Duration;

use flow::grouping::Grouping;
use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "logs/api.called")]
struct ApiCalled {
    user_id: String,
}

#[function(
    event = "logs/api.called",
    batch_events(max_size = 100, timeout = "5s", key = "event.data.user_id"),
    throttle(limit = 10, period = "1m")
)]
async fn record(_ctx: &Ctx, events: Vec<ApiCalled>) -> Result<usize, FlowError> {
    Ok(events.len())
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "docs/doc.edited")]
struct DocEdited {
    doc_id: String,
}

#[function(
    event = "docs/doc.edited",
    debounce(period = "5m", key = "event.data.doc_id", timeout = "1h"),
    cancel_on(event = "docs/doc.deleted", match = doc_id)
)]
async fn reindex(_ctx: &Ctx, event: DocEdited) -> Result<String, FlowError> {
    Ok(event.doc_id)
}

#[function(event = "docs/doc.edited", debounce(period = "1m", events = all))]
async fn digest(_ctx: &Ctx, events: Vec<DocEdited>) -> Result<usize, FlowError> {
    Ok(events.len())
}

fn main() {
    assert_eq!(
        <record as flow::Function>::DEF.grouping,
        Some(Grouping::Batch {
            max_size: 100,
            timeout: Duration::from_secs(5),
            key: Some("event.data.user_id"),
        })
    );
    assert_eq!(
        <reindex as flow::Function>::DEF.grouping,
        Some(Grouping::Debounce {
            period: Duration::from_secs(300),
            timeout: Some(Duration::from_secs(3600)),
            key: Some("event.data.doc_id"),
            all: false,
        })
    );
    let digest = <digest as flow::Function>::DEF.grouping.unwrap();
    assert!(digest.delivers_all());
}
