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

fn main() {
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
