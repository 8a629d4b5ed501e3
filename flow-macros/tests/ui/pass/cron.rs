use flow::prelude::*;

#[function(cron = "0 9 * * 1", timezone = "Asia/Tokyo")]
async fn weekly(_ctx: &Ctx, tick: CronTick) -> Result<String, FlowError> {
    Ok(tick.scheduled.to_rfc3339())
}

#[function(cron = "TZ=Europe/Berlin 30 2 * * *", id = "nightly-sync", retries = 2)]
async fn nightly(_ctx: &Ctx, _tick: flow::CronTick) -> Result<(), FlowError> {
    Ok(())
}

#[function(cron = "@hourly", catch_up = 3)]
async fn hourly(_ctx: &Ctx, _tick: CronTick) -> Result<(), FlowError> {
    Ok(())
}

fn main() {
    use flow::cron::Cron;
    let def = <weekly as flow::Function>::DEF;
    assert_eq!(def.trigger, "flow/cron.weekly");
    assert_eq!(
        def.crons,
        [Cron { schedule: "0 9 * * 1", timezone: "Asia/Tokyo", catch_up: 0 }]
    );
    let def = <nightly as flow::Function>::DEF;
    assert_eq!(def.trigger, "flow/cron.nightly-sync");
    assert_eq!(
        def.crons,
        [Cron { schedule: "30 2 * * *", timezone: "Europe/Berlin", catch_up: 0 }]
    );
    let hourly = <hourly as flow::Function>::DEF.crons[0];
    assert_eq!((hourly.timezone, hourly.catch_up), ("UTC", 3));
}
