use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "crm/sync.requested")]
struct SyncRequested {
    account_id: String,
}

#[function(event = "crm/sync.requested", singleton(key = "event.data.account_id", mode = skip))]
async fn sync(_ctx: &Ctx, event: SyncRequested) -> Result<String, FlowError> {
    Ok(event.account_id)
}

#[function(event = "crm/sync.requested", singleton(mode = cancel))]
async fn reindex(_ctx: &Ctx, event: SyncRequested) -> Result<String, FlowError> {
    Ok(event.account_id)
}

fn main() {
    use flow::catalog::{Singleton, SingletonMode};
    assert_eq!(
        <sync as flow::Function>::DEF.singleton,
        Some(Singleton { key: Some("event.data.account_id"), mode: SingletonMode::Skip })
    );
    assert_eq!(
        <reindex as flow::Function>::DEF.singleton,
        Some(Singleton { key: None, mode: SingletonMode::Cancel })
    );
}
