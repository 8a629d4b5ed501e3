use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "app/report.requested")]
struct ReportRequested {
    day: String,
}

#[function(cron = "0 9 * *")]
async fn four_fields(_ctx: &Ctx, _tick: CronTick) -> Result<(), FlowError> {
    Ok(())
}

#[function(cron = "*/10 * * * * *")]
async fn seconds(_ctx: &Ctx, _tick: CronTick) -> Result<(), FlowError> {
    Ok(())
}

#[function(cron = "0 25 * * *")]
async fn no_such_hour(_ctx: &Ctx, _tick: CronTick) -> Result<(), FlowError> {
    Ok(())
}

#[function(cron = "0 9 * * 1", timezone = "Asia/Tokio")]
async fn no_such_zone(_ctx: &Ctx, _tick: CronTick) -> Result<(), FlowError> {
    Ok(())
}

#[function(cron = "TZ=Asia/Tokyo 0 9 * * 1", timezone = "Asia/Tokyo")]
async fn zone_twice(_ctx: &Ctx, _tick: CronTick) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "app/report.requested", timezone = "Asia/Tokyo")]
async fn zone_without_cron(_ctx: &Ctx, _event: ReportRequested) -> Result<(), FlowError> {
    Ok(())
}

// An event and a schedule: two triggers, so the handler takes an enum of them.
#[function(event = "app/report.requested", cron = "0 9 * * 1")]
async fn two_triggers(_ctx: &Ctx, _event: ReportRequested) -> Result<(), FlowError> {
    Ok(())
}

#[function(cron = "0 9 * * 1")]
async fn takes_an_event(_ctx: &Ctx, _event: ReportRequested) -> Result<(), FlowError> {
    Ok(())
}

#[function(cron = "0 9 * * 1", catch_up = 0)]
async fn catch_up_zero(_ctx: &Ctx, _tick: CronTick) -> Result<(), FlowError> {
    Ok(())
}

#[function(event = "app/report.requested", catch_up = 3)]
async fn catch_up_without_cron(_ctx: &Ctx, _event: ReportRequested) -> Result<(), FlowError> {
    Ok(())
}

fn main() {}
