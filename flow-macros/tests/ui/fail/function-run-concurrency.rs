use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "billing/trial.started")]
struct TrialStarted {
    account_id: String,
}

#[function(event = "billing/trial.started", run_concurrency(limit = 0))]
async fn zero(_ctx: &Ctx, _event: TrialStarted) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "billing/trial.started", run_concurrency(key = "event.data.account_id"))]
async fn no_limit(_ctx: &Ctx, _event: TrialStarted) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "billing/trial.started", run_concurrency(limit = 1, key = "event.data.acount_id"))]
async fn misspelt_field(_ctx: &Ctx, _event: TrialStarted) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "billing/trial.started", run_concurency(limit = 1))]
async fn misspelt_option(_ctx: &Ctx, _event: TrialStarted) -> Result<(), FlowError> {
    Ok(())
}

#[function(
    event = "billing/trial.started",
    run_concurrency(limit = 1, key = "event.data.account_id"),
    run_concurrency(limit = 2, key = "event.data.account_id")
)]
async fn same_rule_twice(_ctx: &Ctx, _event: TrialStarted) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "billing/trial.started", run_concurrency(limit = 1, per = "1h"))]
async fn unknown_key(_ctx: &Ctx, _event: TrialStarted) -> Result<(), FlowError> {
    Ok(())
}

#[function(
    event = "billing/trial.started",
    run_concurrency(limit = 1, key = "event.data.account_id"),
    concurrency(limit = 3, key = "event.data.account_id")
)]
async fn concurrency_that_never_holds(_ctx: &Ctx, _event: TrialStarted) -> Result<(), FlowError> {
    Ok(())
}

fn main() {}
