//! `#[function(cron = "...", timezone = "...")]`: each tick of the schedule starts
//! exactly one run, however many workers serve the function (two here, each with
//! a store of its own, on one test clock); the run receives its tick. Ticks missed
//! while no worker was up are skipped, or the last N caught up (`catch_up = N`). A
//! time a daylight-saving change skips fires when the clocks jump; one it repeats
//! fires once.

mod common;

use std::time::Duration;

use flow::prelude::*;
use flow::{Connect, CronTick};

const WAIT: Duration = Duration::from_secs(60);

/// Every five minutes, read in Tokyo (which has no daylight saving time).
#[function(cron = "*/5 * * * *", timezone = "Asia/Tokyo")]
async fn report(_ctx: &Ctx, tick: CronTick) -> Result<String, FlowError> {
    assert_eq!(tick.schedule, "*/5 * * * *");
    assert_eq!(tick.timezone, "Asia/Tokyo");
    Ok(tick.scheduled.to_rfc3339())
}

/// Every five minutes; after a time without workers, the last two missed ticks.
#[function(cron = "*/5 * * * *", catch_up = 2)]
async fn ledger(_ctx: &Ctx, tick: CronTick) -> Result<String, FlowError> {
    Ok(tick.scheduled.to_rfc3339())
}

async fn completed_of(store: &flow::AnyStore, function: &str) -> i64 {
    let postgres = format!(
        "SELECT count(*) FROM flow.runs WHERE function_id = '{function}' AND status = 'completed'"
    );
    let sqlite = format!(
        "SELECT count(*) FROM flow_runs WHERE function_id = '{function}' AND status = 'completed'"
    );
    common::count(store, &postgres, &sqlite).await
}

async fn completed(store: &flow::AnyStore) -> i64 {
    completed_of(store, "report").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tick_starts_one_run_across_two_workers() {
    let (store, url) = common::store().await;
    let clock = common::clock(); // 2026-03-01T09:00:00Z
    let second = flow::AnyStore::connect(&url).await.unwrap();
    let a = common::spawn_worker(
        common::worker(&store)
            .clock(clock.clone())
            .register::<report>(),
    )
    .await;
    let b = common::spawn_worker(
        common::worker(&second)
            .clock(clock.clone())
            .register::<report>(),
    )
    .await;
    let def = <report as flow::Function>::DEF;
    assert_eq!(def.trigger, "flow/cron.report");
    for tick in 1..=4 {
        clock.advance(Duration::from_secs(300));
        common::eventually(WAIT, &format!("tick {tick}'s run to complete"), || async {
            completed(&store).await == tick
        })
        .await;
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    // One run per tick, each with its own tick.
    assert_eq!(completed(&store).await, 4);
    let runs = common::count(
        &store,
        "SELECT count(*) FROM flow.runs WHERE function_id = 'report'",
        "SELECT count(*) FROM flow_runs WHERE function_id = 'report'",
    )
    .await;
    assert_eq!(runs, 4, "one run per tick, though both workers sent each");
    let outputs = common::count(
        &store,
        "SELECT count(DISTINCT output) FROM flow.runs WHERE function_id = 'report'
           AND output IN ('\"2026-03-01T09:05:00+00:00\"', '\"2026-03-01T09:10:00+00:00\"',
                          '\"2026-03-01T09:15:00+00:00\"', '\"2026-03-01T09:20:00+00:00\"')",
        "SELECT count(DISTINCT output) FROM flow_runs WHERE function_id = 'report'
           AND output IN ('\"2026-03-01T09:05:00+00:00\"', '\"2026-03-01T09:10:00+00:00\"',
                          '\"2026-03-01T09:15:00+00:00\"', '\"2026-03-01T09:20:00+00:00\"')",
    )
    .await;
    assert_eq!(outputs, 4, "each run received its own tick");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_ticks_are_skipped_or_the_last_n_caught_up() {
    let (store, _) = common::store().await;
    let clock = common::clock(); // 2026-03-01T09:00:00Z
    let builder = || {
        common::worker(&store)
            .clock(clock.clone())
            .register::<report>()
            .register::<ledger>()
    };
    let first = common::spawn_worker(builder()).await;
    clock.advance(Duration::from_secs(300));
    common::eventually(WAIT, "09:05's runs", || async {
        completed_of(&store, "report").await == 1 && completed_of(&store, "ledger").await == 1
    })
    .await;
    first.stop().await.unwrap();
    // Half an hour without a worker: six ticks missed, 09:10 to 09:35.
    clock.advance(Duration::from_secs(1800));
    let second = common::spawn_worker(builder()).await;
    common::eventually(WAIT, "the ledger's last two missed ticks", || async {
        completed_of(&store, "ledger").await == 3
    })
    .await;
    // The next tick runs both; the report skipped what it missed.
    clock.advance(Duration::from_secs(300));
    common::eventually(WAIT, "09:40's runs", || async {
        completed_of(&store, "report").await == 2 && completed_of(&store, "ledger").await == 4
    })
    .await;
    second.stop().await.unwrap();
    let caught_up = common::count(
        &store,
        "SELECT count(*) FROM flow.runs WHERE function_id = 'ledger'
           AND output IN ('\"2026-03-01T09:30:00+00:00\"', '\"2026-03-01T09:35:00+00:00\"')",
        "SELECT count(*) FROM flow_runs WHERE function_id = 'ledger'
           AND output IN ('\"2026-03-01T09:30:00+00:00\"', '\"2026-03-01T09:35:00+00:00\"')",
    )
    .await;
    assert_eq!(caught_up, 2, "the last two missed ticks, 09:30 and 09:35");
    assert_eq!(
        completed_of(&store, "report").await,
        2,
        "09:05 and 09:40 only"
    );
    assert_eq!(completed_of(&store, "ledger").await, 4);
}

/// Half past two every night in Berlin: a time the spring change skips (the
/// clocks go from 02:00 to 03:00) and the autumn change repeats (03:00 back to
/// 02:00).
#[function(cron = "30 2 * * *", timezone = "Europe/Berlin")]
async fn berlin_night(_ctx: &Ctx, tick: CronTick) -> Result<String, FlowError> {
    Ok(tick.scheduled.to_rfc3339())
}

/// The ticks `berlin_night`'s completed runs received, in order.
async fn nights(store: &flow::AnyStore) -> Vec<String> {
    common::strings(
        store,
        "SELECT output #>> '{}' FROM flow.runs WHERE function_id = 'berlin_night'
           AND status = 'completed' ORDER BY output",
        "SELECT json_extract(output, '$') FROM flow_runs WHERE function_id = 'berlin_night'
           AND status = 'completed' ORDER BY output",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_time_fires_when_the_clocks_jump_and_a_repeated_one_fires_once() {
    // Spring: 02:30 does not exist on 29 March 2026 in Berlin; the tick fires
    // when the clocks jump, at 03:00 CEST (01:00 UTC), then at 02:30 CEST on
    // the next night.
    let (store, _) = common::store().await;
    let clock = flow::ManualClock::new("2026-03-29T00:50:00Z".parse().unwrap());
    let builder = |store: &flow::AnyStore, clock: &flow::ManualClock| {
        common::worker(store)
            .clock(clock.clone())
            .lease(Duration::from_secs(3 * 86_400))
            .register::<berlin_night>()
    };
    let worker = common::spawn_worker(builder(&store, &clock)).await;
    clock.advance(Duration::from_secs(600));
    common::eventually(WAIT, "the tick at the jump", || async {
        nights(&store).await.len() == 1
    })
    .await;
    clock.advance(Duration::from_secs(86_400 - 1800));
    common::eventually(WAIT, "the next night's tick", || async {
        nights(&store).await.len() == 2
    })
    .await;
    worker.stop().await.unwrap();
    assert_eq!(
        nights(&store).await,
        ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]
    );

    // Autumn: 02:30 happens twice on 25 October 2026 (CEST, then CET); it fires
    // the first time only. The worker sends ticks in order, so once the next
    // night's has run, a repeat would have run before it.
    let (store, _) = common::store().await;
    let clock = flow::ManualClock::new("2026-10-25T00:00:00Z".parse().unwrap());
    let worker = common::spawn_worker(builder(&store, &clock)).await;
    clock.advance(Duration::from_secs(1800));
    common::eventually(WAIT, "the first 02:30", || async {
        nights(&store).await.len() == 1
    })
    .await;
    // Past the repeated 02:30 (01:30 UTC), within the time a late tick is sent.
    clock.advance(Duration::from_secs(5400));
    // The next night's 02:30 CET.
    clock.advance(Duration::from_secs(86_400 - 1800));
    common::eventually(WAIT, "the next night's tick", || async {
        nights(&store).await.len() >= 2
    })
    .await;
    worker.stop().await.unwrap();
    assert_eq!(
        nights(&store).await,
        ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
    );
}
