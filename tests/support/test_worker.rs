//! A worker process for the end-to-end tests (kill, waits and invokes, shared work,
//! SIGTERM), on either backend. Its functions register themselves through
//! inventory, as in a user's binary.
//!
//! Environment: DATABASE_URL (postgres:// or sqlite://); FLOW_TEST_EFFECTS, a file
//! to which each step body appends `pid run step started_us` when it starts;
//! FLOW_TEST_LEASE_MS (default 1000); FLOW_TEST_POLL_MS (default one hour);
//! FLOW_TEST_SLOW_MS; FLOW_TEST_WORKER_ID; FLOW_TEST_READY, a path prefix: the
//! worker creates `<prefix>.<pid>` once it is up; FLOW_TEST_CLOCK_FILE, a file
//! holding an RFC 3339 time that the worker's clock reads (a test clock shared
//! by processes). On a clean exit it prints its report.

use std::future::IntoFuture;
use std::io::Write;
use std::time::Duration;

use flow::prelude::*;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One line per step body start, appended in one write (O_APPEND keeps lines whole).
fn effect(ctx: &flow::StepCtx, step: &str) -> Result<(), StepError> {
    let path = std::env::var("FLOW_TEST_EFFECTS").map_err(StepError::fatal)?;
    let line = format!(
        "{} {} {} {}\n",
        std::process::id(),
        ctx.run_id(),
        step,
        chrono::Utc::now().timestamp_micros()
    );
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(line.as_bytes())?;
    Ok(())
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/work.item")]
struct WorkItem {
    n: i64,
}

#[step]
async fn extract(ctx: &Ctx, n: i64) -> Result<i64, StepError> {
    effect(ctx, "extract")?;
    Ok(n)
}

#[step]
async fn transform(ctx: &Ctx, n: i64) -> Result<i64, StepError> {
    effect(ctx, "transform")?;
    tokio::time::sleep(Duration::from_millis(env_u64("FLOW_TEST_SLOW_MS", 0))).await;
    Ok(n * 2)
}

#[step]
async fn load(ctx: &Ctx, n: i64) -> Result<i64, StepError> {
    effect(ctx, "load")?;
    Ok(n + 1)
}

#[function(event = "test/work.item")]
async fn etl(ctx: &Ctx, event: WorkItem) -> Result<i64, FlowError> {
    let a = extract(ctx, event.n).await?;
    let b = transform(ctx, a).await?;
    Ok(load(ctx, b).await?)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/work.order")]
struct Order {
    id: i64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/work.review")]
struct Review {
    order: i64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/work.approved")]
struct Approved {
    order: i64,
    by: String,
}

#[step]
async fn open_review(ctx: &Ctx, order: i64) -> Result<i64, StepError> {
    effect(ctx, "open_review")?;
    Ok(order)
}

/// Invoked by `order`: waits (parked, for an hour at most) for the order's approval
/// and, beside it, for a countersignature sent as a signal.
#[function(event = "test/work.review")]
async fn review(ctx: &Ctx, review: Review) -> Result<String, FlowError> {
    let order = open_review(ctx, review.order).await?;
    let hour = Duration::from_secs(3600);
    let (approved, countersigned) = tokio::join!(
        ctx.wait_for_event::<Approved>("approval")
            .matching(|f| f.order, order)
            .timeout(hour)
            .into_future(),
        ctx.wait_for_signal::<String>("countersign", format!("countersign/{order}"))
            .timeout(hour)
            .into_future(),
    );
    let by = approved?.map_or_else(|| "timed out".to_owned(), |a| a.by);
    let and = countersigned?.unwrap_or_else(|| "nobody".to_owned());
    Ok(format!("{by} and {and}"))
}

#[step]
async fn ship(ctx: &Ctx, order: i64, approver: String) -> Result<String, StepError> {
    effect(ctx, "ship")?;
    Ok(format!("order {order} approved by {approver}"))
}

/// Invokes `review` and ships once it returns.
#[function(event = "test/work.order")]
async fn order(ctx: &Ctx, order: Order) -> Result<String, FlowError> {
    let approver = ctx
        .invoke("review", review::with(Review { order: order.id }))
        .await?;
    Ok(ship(ctx, order.id, approver).await?)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/work.limited")]
struct Limited {
    customer: String,
}

/// Writes `hold:<customer>` when it starts and `held:<customer>` when it ends, so
/// the test can tell which runs of a customer overlapped.
#[step]
async fn hold(ctx: &Ctx, customer: String) -> Result<(), StepError> {
    effect(ctx, &format!("hold:{customer}"))?;
    tokio::time::sleep(Duration::from_millis(env_u64("FLOW_TEST_SLOW_MS", 0))).await;
    effect(ctx, &format!("held:{customer}"))?;
    Ok(())
}

/// At most two runs per customer at once, across every worker process.
#[function(
    event = "test/work.limited",
    concurrency(limit = 2, key = "event.data.customer")
)]
async fn limited(ctx: &Ctx, event: Limited) -> Result<(), FlowError> {
    Ok(hold(ctx, event.customer).await?)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/work.keyed")]
struct Keyed {
    key: u32,
}

/// Writes `hold:<key>` when it starts, then holds until the file named by
/// FLOW_TEST_RELEASE exists, and writes `held:<key>` when it ends.
#[step]
async fn hold_until_released(ctx: &Ctx, key: u32) -> Result<(), StepError> {
    effect(ctx, &format!("hold:{key}"))?;
    let release = std::env::var("FLOW_TEST_RELEASE").map_err(StepError::fatal)?;
    // Hundreds of runs wait at once: a look every 100 ms each is enough.
    while !std::path::Path::new(&release).exists() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    effect(ctx, &format!("held:{key}"))?;
    Ok(())
}

/// One run per key at once, across every worker process.
#[function(
    event = "test/work.keyed",
    concurrency(limit = 1, key = "event.data.key")
)]
async fn one_per_key(ctx: &Ctx, event: Keyed) -> Result<(), FlowError> {
    Ok(hold_until_released(ctx, event.key).await?)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/work.throttled")]
struct Throttled {
    customer: String,
}

/// Three starts an hour per customer, across every worker process.
#[function(
    event = "test/work.throttled",
    throttle(limit = 3, period = "1h", key = "event.data.customer")
)]
async fn throttled(_ctx: &Ctx, event: Throttled) -> Result<String, FlowError> {
    Ok(event.customer)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/work.active")]
struct Active {
    account: String,
}

/// Writes `hold:<account>` when it starts (then takes FLOW_TEST_SLOW_MS).
#[step]
async fn begin(ctx: &Ctx, account: String) -> Result<(), StepError> {
    effect(ctx, &format!("hold:{account}"))?;
    tokio::time::sleep(Duration::from_millis(env_u64("FLOW_TEST_SLOW_MS", 0))).await;
    Ok(())
}

/// Writes `held:<account>` when it starts: the run's last step.
#[step]
async fn finish(ctx: &Ctx, account: String) -> Result<(), StepError> {
    effect(ctx, &format!("held:{account}"))?;
    Ok(())
}

/// One active run per account, its sleep included, across every worker process.
#[function(
    event = "test/work.active",
    run_concurrency(limit = 1, key = "event.data.account")
)]
async fn one_active(ctx: &Ctx, event: Active) -> Result<(), FlowError> {
    begin(ctx, event.account.clone()).await?;
    ctx.sleep("nap", Duration::from_millis(150)).await?;
    finish(ctx, event.account).await?;
    Ok(())
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/work.grouped")]
struct Grouped {
    key: u32,
    n: u32,
}

/// Up to ten events of a key per run, or fewer a second after the first.
#[function(
    event = "test/work.grouped",
    batch_events(max_size = 10, timeout = "1s", key = "event.data.key")
)]
async fn batched(_ctx: &Ctx, events: Vec<Grouped>) -> Result<Vec<(u32, u32)>, FlowError> {
    Ok(events.iter().map(|e| (e.key, e.n)).collect())
}

/// Every event of a key until it has been quiet for a second, per run.
#[function(
    event = "test/work.grouped",
    debounce(period = "1s", key = "event.data.key", events = all)
)]
async fn debounced(_ctx: &Ctx, events: Vec<Grouped>) -> Result<Vec<(u32, u32)>, FlowError> {
    Ok(events.iter().map(|e| (e.key, e.n)).collect())
}

/// Midnight of every 29 February (UTC): never during a test on the machine's
/// clock, so only tests with FLOW_TEST_CLOCK_FILE see its ticks.
#[function(cron = "0 0 29 2 *")]
async fn leap_day(_ctx: &Ctx, tick: CronTick) -> Result<String, FlowError> {
    Ok(tick.scheduled.to_rfc3339())
}

/// A clock that reads its time from a file the test writes: processes share it.
/// Read every 10 ms by a thread of its own.
struct FileClock {
    now: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl FileClock {
    fn new(path: String) -> Result<Self, Box<dyn std::error::Error>> {
        let read = move || -> Option<i64> {
            let text = std::fs::read_to_string(&path).ok()?;
            let at: chrono::DateTime<chrono::Utc> = text.trim().parse().ok()?;
            Some(at.timestamp_micros())
        };
        let start = read().ok_or("FLOW_TEST_CLOCK_FILE does not hold a time")?;
        let now = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(start));
        let shared = now.clone();
        std::thread::spawn(move || {
            loop {
                if let Some(at) = read() {
                    shared.fetch_max(at, std::sync::atomic::Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Ok(FileClock { now })
    }
}

impl flow::Clock for FileClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let micros = self.now.load(std::sync::atomic::Ordering::SeqCst);
        chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default()
    }

    fn sleep_until(
        &self,
        deadline: chrono::DateTime<chrono::Utc>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let now = self.now.clone();
        Box::pin(async move {
            let at = deadline.timestamp_micros();
            while now.load(std::sync::atomic::Ordering::SeqCst) < at {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")?;
    let store = <flow::AnyStore as flow::Connect>::connect(&url).await?;
    let lease = env_u64("FLOW_TEST_LEASE_MS", 1000);
    let mut builder = flow::Worker::builder(store)
        .concurrency(env_u64("FLOW_TEST_CONCURRENCY", 32) as usize)
        .lease(Duration::from_millis(lease))
        .renew_every(Duration::from_millis(lease / 4))
        .poll_interval(Duration::from_millis(env_u64(
            "FLOW_TEST_POLL_MS",
            3_600_000,
        )));
    if let Ok(id) = std::env::var("FLOW_TEST_WORKER_ID") {
        builder = builder.worker_id(id);
    }
    if let Ok(path) = std::env::var("FLOW_TEST_CLOCK_FILE") {
        builder = builder.clock(FileClock::new(path)?);
    }
    let worker = builder.build()?;
    worker.announce().await?;
    // Listened to before the ready marker: a SIGTERM the test sends once it sees
    // the marker shuts the worker down gracefully, however soon it comes.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    if let Ok(path) = std::env::var("FLOW_TEST_READY") {
        // Tells the test this process is up (its notifications may still be starting;
        // the worker looks for work once they are).
        std::fs::write(format!("{path}.{}", std::process::id()), b"ready")?;
    }
    let report = worker
        .run_until(async move {
            terminate.recv().await;
        })
        .await?;
    println!(
        "REPORT finished={} parked={} released={} lost={}",
        report.finished, report.parked, report.released, report.lost
    );
    Ok(())
}
