//! The functions the scenarios run, in the worker processes. Each records when it
//! was sent (`sent_us`, microseconds since the epoch, taken before `send`).

use std::collections::HashMap;
use std::sync::Mutex;

use flow::prelude::*;

#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct Payload {
    pub n: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bench/three-steps")]
pub struct ThreeSteps {
    pub sent_us: i64,
    pub n: u64,
}

#[step]
async fn first(_ctx: &Ctx, n: u64) -> Result<Payload, StepError> {
    Ok(Payload { n })
}

#[step]
async fn second(_ctx: &Ctx, p: Payload) -> Result<Payload, StepError> {
    Ok(Payload { n: p.n + 1 })
}

#[step]
async fn third(_ctx: &Ctx, p: Payload) -> Result<Payload, StepError> {
    Ok(Payload { n: p.n * 2 })
}

#[function(event = "bench/three-steps")]
pub async fn three_steps(ctx: &Ctx, event: ThreeSteps) -> Result<u64, FlowError> {
    let a = first(ctx, event.n).await?;
    let b = second(ctx, a).await?;
    Ok(third(ctx, b).await?.n)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bench/keyed")]
pub struct Keyed {
    pub sent_us: i64,
    pub n: u64,
    pub key: u64,
}

/// `three_steps` with one run at a time per key, under one throttle shared by
/// every run, high enough never to hold one (scenario 9: the cost of enforcing).
#[function(
    event = "bench/keyed",
    concurrency(limit = 1, key = "event.data.key"),
    throttle(limit = 100000, period = "1s", scope = shared("bench"))
)]
pub async fn keyed_three_steps(ctx: &Ctx, event: Keyed) -> Result<u64, FlowError> {
    let a = first(ctx, event.n).await?;
    let b = second(ctx, a).await?;
    Ok(third(ctx, b).await?.n)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bench/fan-out")]
pub struct FanOut {
    pub sent_us: i64,
}

macro_rules! fan_out_functions {
    ($($name:ident),*) => {$(
        #[function(event = "bench/fan-out")]
        pub async fn $name(ctx: &Ctx, _event: FanOut) -> Result<u64, FlowError> {
            Ok(first(ctx, 1).await?.n)
        }
    )*};
}
fan_out_functions!(
    fan_0, fan_1, fan_2, fan_3, fan_4, fan_5, fan_6, fan_7, fan_8, fan_9
);

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bench/sleeper")]
pub struct Sleeper {
    pub sent_us: i64,
    pub sleep_ms: u64,
}

#[function(event = "bench/sleeper")]
pub async fn sleeper(ctx: &Ctx, event: Sleeper) -> Result<u64, FlowError> {
    ctx.sleep("nap", Duration::from_millis(event.sleep_ms))
        .await?;
    // Its start time, minus the sleep's wake time, is the lateness.
    Ok(first(ctx, 1).await?.n)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bench/retry")]
pub struct Retry {
    pub sent_us: i64,
    pub failures: u32,
}

/// Failed attempts per run, in this worker process (the scenario runs one worker).
static FAILED: Mutex<Option<HashMap<flow::RunId, u32>>> = Mutex::new(None);

#[step(retries = 5, backoff(initial = "1ms", max = "1ms", jitter = 0.0))]
async fn flaky(ctx: &Ctx, failures: u32) -> Result<Payload, StepError> {
    let mut failed = FAILED.lock().unwrap();
    let count = failed
        .get_or_insert_with(HashMap::new)
        .entry(ctx.run_id())
        .or_insert(0);
    if *count < failures {
        *count += 1;
        return Err(StepError::retriable("planned failure"));
    }
    Ok(Payload { n: 1 })
}

#[function(event = "bench/retry")]
pub async fn retry(ctx: &Ctx, event: Retry) -> Result<u64, FlowError> {
    let a = first(ctx, 1).await?;
    let b = flaky(ctx, event.failures).await?;
    Ok(third(ctx, Payload { n: a.n + b.n }).await?.n)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bench/hold")]
pub struct Hold {
    pub hold_ms: u64,
}

/// A step that stays in flight (as a slow API call would), for the memory scenario.
#[step]
async fn held(_ctx: &Ctx, hold_ms: u64) -> Result<Payload, StepError> {
    tokio::time::sleep(Duration::from_millis(hold_ms)).await;
    Ok(Payload { n: 1 })
}

#[function(event = "bench/hold")]
pub async fn hold(ctx: &Ctx, event: Hold) -> Result<u64, FlowError> {
    let a = first(ctx, 1).await?;
    Ok(held(ctx, event.hold_ms).await?.n + a.n)
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bench/waiter")]
pub struct Waiter {
    pub sent_us: i64,
    pub key: String,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "bench/matched")]
pub struct Matched {
    pub sent_us: i64,
    pub key: String,
    /// Sent alone at a steady pace, not in a burst.
    #[serde(default)]
    pub paced: bool,
}

/// Waits for the event that carries its key; the start of `first` after it is
/// the resume time.
#[function(event = "bench/waiter")]
pub async fn waiter(ctx: &Ctx, event: Waiter) -> Result<u64, FlowError> {
    let matched = ctx
        .wait_for_event::<Matched>("match")
        .matching(|f| f.key, event.key.as_str())
        .timeout(Duration::from_secs(3600))
        .await?;
    if matched.is_none() {
        return Err(FlowError::fatal("no match within the hour"));
    }
    Ok(first(ctx, 1).await?.n)
}
