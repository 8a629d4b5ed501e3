use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "accounts/account.created")]
struct AccountCreated {
    id: u32,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "accounts/account.deleted")]
struct AccountDeleted {
    id: u32,
}

#[derive(Triggers)]
enum Change {
    Created(AccountCreated),
    Deleted(AccountDeleted),
    Nightly(CronTick),
}

#[function(
    event = "accounts/account.created",
    event = "accounts/account.deleted",
    cron = "0 3 * * *",
    cron = "TZ=Asia/Tokyo 0 12 * * 1",
    concurrency = 2
)]
async fn sync(_ctx: &Ctx, change: Change) -> Result<u32, FlowError> {
    Ok(match change {
        Change::Created(a) => a.id,
        Change::Deleted(a) => a.id,
        Change::Nightly(_) => 0,
    })
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "accounts/plan.upgraded", name = "accounts/plan.downgraded")]
struct PlanChanged {
    plan: String,
}

#[function(event = "accounts/plan.upgraded", event = "accounts/plan.downgraded")]
async fn bill(_ctx: &Ctx, change: PlanChanged) -> Result<String, FlowError> {
    Ok(change.plan)
}

#[function(event = "accounts/plan.downgraded")]
async fn downgraded(_ctx: &Ctx, change: PlanChanged) -> Result<String, FlowError> {
    Ok(change.plan)
}

fn main() {
    use flow::Event;
    assert_eq!(PlanChanged::NAME, "accounts/plan.upgraded");
    assert_eq!(PlanChanged::ALSO, ["accounts/plan.downgraded"]);
    assert_eq!(<bill as flow::Function>::DEF.more_triggers, ["accounts/plan.downgraded"]);
    assert_eq!(<downgraded as flow::Function>::DEF.trigger, "accounts/plan.downgraded");
    let def = <sync as flow::Function>::DEF;
    assert_eq!(
        def.triggers(),
        ["accounts/account.created", "accounts/account.deleted", "flow/cron.sync"]
    );
    assert_eq!(def.crons.len(), 2);
    assert_eq!(def.crons[1].timezone, "Asia/Tokyo");
    assert_eq!(
        <Change as flow::Triggers>::NAMES,
        ["accounts/account.created", "accounts/account.deleted", "flow/cron"]
    );
}
