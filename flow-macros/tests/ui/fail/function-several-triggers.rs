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
}

#[derive(Triggers)]
enum Everything {
    Created(AccountCreated),
    Deleted(AccountDeleted),
    Tick(CronTick),
}

// The cron's ticks have no variant.
#[function(event = "accounts/account.created", event = "accounts/account.deleted", cron = "0 0 * * *")]
async fn no_tick_variant(_ctx: &Ctx, _change: Change) -> Result<(), FlowError> {
    Ok(())
}

// The ticks' variant has no trigger.
#[function(event = "accounts/account.created", event = "accounts/account.deleted")]
async fn tick_never_fires(_ctx: &Ctx, _change: Everything) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "accounts/account.created", event = "accounts/account.deleted")]
async fn one_type(_ctx: &Ctx, _event: AccountCreated) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "accounts/account.created", event = "accounts/account.created")]
async fn twice(_ctx: &Ctx, _event: AccountCreated) -> Result<(), FlowError> {
    Ok(())
}

#[function(
    event = "accounts/account.created",
    event = "accounts/account.deleted",
    concurrency(limit = 1, key = "event.data.id"),
    cancel_on(event = "accounts/account.closed", match = id)
)]
async fn reads_fields(_ctx: &Ctx, _change: Change) -> Result<(), FlowError> {
    Ok(())
}

#[function(
    event = "a/e1", event = "a/e2", event = "a/e3", event = "a/e4", event = "a/e5",
    event = "a/e6", event = "a/e7", event = "a/e8", event = "a/e9", event = "a/e10",
    event = "a/e11"
)]
async fn eleven(_ctx: &Ctx, _change: Change) -> Result<(), FlowError> {
    Ok(())
}

fn main() {}
