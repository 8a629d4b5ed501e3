use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "billing/trial.started")]
#[serde(rename_all = "camelCase")]
struct TrialStarted {
    account_id: String,
}

#[function(
    event = "billing/trial.started",
    run_concurrency(limit = 1, key = "event.data.accountId"),
    run_concurrency(limit = 50, scope = shared("trials")),
    concurrency = 5
)]
async fn trial(_ctx: &Ctx, event: TrialStarted) -> Result<String, FlowError> {
    Ok(event.account_id)
}

#[function(event = "billing/trial.started", run_concurrency = 2)]
async fn audit(_ctx: &Ctx, _event: TrialStarted) -> Result<(), FlowError> {
    Ok(())
}

fn main() {
    use flow::flow_control::{Concurrency, ConcurrencyScope};
    let def = <trial as flow::Function>::DEF;
    assert_eq!(
        def.run_concurrency,
        [
            Concurrency {
                limit: 1,
                key: Some("event.data.accountId"),
                scope: ConcurrencyScope::Function
            },
            Concurrency { limit: 50, key: None, scope: ConcurrencyScope::Shared("trials") },
        ]
    );
    assert_eq!(def.concurrency.len(), 1);
    assert_eq!(
        <audit as flow::Function>::DEF.run_concurrency,
        [Concurrency { limit: 2, key: None, scope: ConcurrencyScope::Function }]
    );
}
