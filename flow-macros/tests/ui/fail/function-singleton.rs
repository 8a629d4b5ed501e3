use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "crm/sync.requested")]
struct SyncRequested {
    account_id: String,
}

// No mode.
#[function(event = "crm/sync.requested", singleton(key = "event.data.account_id"))]
async fn sync(_ctx: &Ctx, event: SyncRequested) -> Result<String, FlowError> {
    Ok(event.account_id)
}

// A mode flow does not have.
#[function(event = "crm/sync.requested", singleton(mode = replace))]
async fn reindex(_ctx: &Ctx, event: SyncRequested) -> Result<String, FlowError> {
    Ok(event.account_id)
}

// A misspelt field of the event.
#[function(event = "crm/sync.requested", singleton(key = "event.data.acount_id", mode = skip))]
async fn export(_ctx: &Ctx, event: SyncRequested) -> Result<String, FlowError> {
    Ok(event.account_id)
}

// Not a list.
#[function(event = "crm/sync.requested", singleton = "event.data.account_id")]
async fn archive(_ctx: &Ctx, event: SyncRequested) -> Result<String, FlowError> {
    Ok(event.account_id)
}

// An unknown key.
#[function(event = "crm/sync.requested", singleton(mode = skip, limit = 1))]
async fn purge(_ctx: &Ctx, event: SyncRequested) -> Result<String, FlowError> {
    Ok(event.account_id)
}

fn main() {}
