//! A nightly sync: a cron function at two in the morning, Berlin time, loads the
//! customers and fans out one `customer/sync.requested` event per customer; another
//! function syncs each one, as its own run with its own retries. The schedule runs
//! through the night Berlin moves its clocks from 02:00 to 03:00 (29 March 2026),
//! when 02:00 does not exist: that night's tick fires at 03:00. A virtual clock
//! makes the nights pass at once. Without DATABASE_URL the data goes to ./flow.db
//! (SQLite).
//!
//! ```sh
//! cargo run --example daily_report
//! ```

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flow::prelude::*;
use flow::{ManualClock, NewEvent};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "customer/sync.requested")]
struct SyncRequested {
    customer_id: String,
    night: DateTime<Utc>,
}

/// The ticks the nightly function saw, and the (night, customer) synced: sets,
/// since a handler's code outside its steps runs again when a run resumes.
static TICKS: Mutex<BTreeSet<DateTime<Utc>>> = Mutex::new(BTreeSet::new());
static SYNCED: Mutex<BTreeSet<(DateTime<Utc>, String)>> = Mutex::new(BTreeSet::new());

/// The customers to sync: a real one reads them from the application's database.
#[step]
async fn load_customers(_ctx: &Ctx) -> Result<Vec<String>, StepError> {
    Ok(vec!["acme".into(), "globex".into(), "initech".into()])
}

#[function(cron = "0 2 * * *", timezone = "Europe/Berlin")]
async fn nightly_sync(ctx: &Ctx, tick: CronTick) -> Result<usize, FlowError> {
    TICKS.lock().unwrap().insert(tick.scheduled);
    let customers = load_customers(ctx).await?;
    let events = customers
        .iter()
        .map(|customer| {
            NewEvent::new(&SyncRequested {
                customer_id: customer.clone(),
                night: tick.scheduled,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // One event per customer, sent as a step: a replay never sends them twice.
    ctx.send_event("fan-out", events).await?;
    Ok(customers.len())
}

/// Copies one customer's data: a real one calls the CRM's API.
#[step(retries = 5)]
async fn copy_customer(_ctx: &Ctx, customer_id: &str) -> Result<String, StepError> {
    Ok(format!("{customer_id} synced"))
}

#[function(event = "customer/sync.requested")]
async fn sync_customer(ctx: &Ctx, request: SyncRequested) -> Result<String, FlowError> {
    let done = copy_customer(ctx, &request.customer_id).await?;
    SYNCED
        .lock()
        .unwrap()
        .insert((request.night, request.customer_id));
    Ok(done)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "flow_core=warn".into()),
        )
        .init();

    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| flow::DEFAULT_SQLITE_URL.into());
    // 23:00 UTC on 28 March 2026; that night Berlin moves from 02:00 to 03:00.
    let clock = ManualClock::new("2026-03-28T23:00:00Z".parse()?);
    let worker = flow::Worker::connect(&url)
        .await?
        .clock(clock.clone())
        // Up to a day of the virtual clock passes at once: leases must outlast it.
        .lease(Duration::from_secs(3 * 86_400))
        .build()?
        .spawn();

    // To each night's tick: 03:00 CEST on the 29th (01:00 UTC; 02:00 does not
    // exist that night), then 02:00 CEST on the 30th (00:00 UTC).
    for (night, hours) in [(1, 2), (2, 23)] {
        clock.advance(Duration::from_secs(hours * 3600));
        wait_until(|| TICKS.lock().unwrap().len() == night).await?;
        let tick = *TICKS
            .lock()
            .unwrap()
            .iter()
            .nth(night - 1)
            .ok_or("a tick")?;
        let synced_that_night = || {
            let synced = SYNCED.lock().unwrap();
            synced.iter().filter(|(at, _)| *at == tick).count()
        };
        wait_until(|| synced_that_night() == 3).await?;
        println!(
            "night {night}: tick scheduled for {} UTC, {} customers synced",
            tick.format("%Y-%m-%d %H:%M"),
            synced_that_night()
        );
    }
    let synced = SYNCED.lock().unwrap().clone();
    let customers: BTreeSet<&String> = synced.iter().map(|(_, customer)| customer).collect();
    println!(
        "{} customer syncs over two nights, {} customers",
        synced.len(),
        customers.len()
    );
    let report = worker.stop().await?;
    println!("worker stopped: {} runs finished", report.finished);
    Ok(())
}

/// Waits (a minute at most) until `done` holds.
async fn wait_until(done: impl Fn() -> bool) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        if tokio::time::Instant::now() > deadline {
            return Err("the night's syncs did not finish within a minute".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
