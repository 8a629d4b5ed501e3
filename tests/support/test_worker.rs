//! A worker process for the end-to-end tests (kill, shared work, SIGTERM). Its
//! functions register themselves through inventory, as in a user's binary.
//!
//! Environment: DATABASE_URL; FLOW_TEST_LEASE_MS (default 1000); FLOW_TEST_WORKER_ID.
//! Side effects go to the table `test_effects` (created by the test), with the
//! time each step body started. On a clean exit it prints its report.

use std::sync::OnceLock;
use std::time::Duration;

use flow::prelude::*;
use sqlx::PgPool;

static EFFECTS: OnceLock<PgPool> = OnceLock::new();

async fn effect(ctx: &Ctx, step: &str) -> Result<(), StepError> {
    let pool = EFFECTS.get().expect("effects pool");
    sqlx::query("INSERT INTO test_effects (run_id, step) VALUES ($1, $2)")
        .bind(ctx.run_id().0)
        .bind(step)
        .execute(pool)
        .await?;
    Ok(())
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/work.item")]
struct WorkItem {
    n: i64,
}

#[step]
async fn extract(ctx: &Ctx, n: i64) -> Result<i64, StepError> {
    effect(ctx, "extract").await?;
    Ok(n)
}

#[step]
async fn transform(ctx: &Ctx, n: i64, slow_ms: u64) -> Result<i64, StepError> {
    effect(ctx, "transform").await?;
    tokio::time::sleep(Duration::from_millis(slow_ms)).await;
    Ok(n * 2)
}

#[step]
async fn load(ctx: &Ctx, n: i64) -> Result<i64, StepError> {
    effect(ctx, "load").await?;
    Ok(n + 1)
}

#[function(event = "test/work.item")]
async fn etl(ctx: &Ctx, event: WorkItem) -> Result<i64, FlowError> {
    let slow_ms: u64 = std::env::var("FLOW_TEST_SLOW_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let a = extract(ctx, event.n).await?;
    let b = transform(ctx, a, slow_ms).await?;
    Ok(load(ctx, b).await?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")?;
    EFFECTS
        .set(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(4)
                .connect(&url)
                .await?,
        )
        .ok();
    let lease = std::env::var("FLOW_TEST_LEASE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let store = flow::PgStore::connect_with(
        &url,
        flow::PgStoreOptions {
            max_connections: 6,
            ..Default::default()
        },
    )
    .await?;
    let mut builder = flow::Worker::builder(flow::AnyStore::from(store))
        .lease(Duration::from_millis(lease))
        .renew_every(Duration::from_millis(lease / 4))
        .poll_interval(Duration::from_secs(3600));
    if let Ok(id) = std::env::var("FLOW_TEST_WORKER_ID") {
        builder = builder.worker_id(id);
    }
    let report = builder.build()?.run().await?;
    println!(
        "REPORT finished={} parked={} released={} lost={}",
        report.finished, report.parked, report.released, report.lost
    );
    Ok(())
}
