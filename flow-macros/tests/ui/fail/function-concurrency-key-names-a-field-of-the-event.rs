use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "support/thread.opened")]
struct ThreadOpened {
    customer_id: String,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "support/thread.closed")]
#[serde(rename_all = "camelCase")]
struct ThreadClosed {
    customer_id: String,
}

#[function(event = "support/thread.opened", concurrency(limit = 1, key = "event.data.custmer_id"))]
async fn classify(_ctx: &Ctx, event: ThreadOpened) -> Result<String, FlowError> {
    Ok(event.customer_id)
}

// The key reads the JSON data, where serde's rename makes it `customerId`.
#[function(event = "support/thread.closed", concurrency(limit = 1, key = "event.data.customer_id"))]
async fn close(_ctx: &Ctx, event: ThreadClosed) -> Result<String, FlowError> {
    Ok(event.customer_id)
}

fn main() {}
