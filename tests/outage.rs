//! A database outage: every connection of the worker is killed, again and again for
//! a second and a half, while runs are mid-step (as a PostgreSQL restart does).
//! Statements in flight fail; the worker reconnects, and every run completes: none is
//! stranded, none loses a checkpoint it reported.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flow::prelude::*;
use sqlx::PgPool;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/outage")]
struct Job {
    n: u32,
}

static STARTED: AtomicU32 = AtomicU32::new(0);

#[step]
async fn slow(_ctx: &Ctx, n: u32) -> Result<u32, StepError> {
    STARTED.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(n)
}

#[step]
async fn quick(_ctx: &Ctx, n: u32) -> Result<u32, StepError> {
    Ok(n + 1)
}

#[function(event = "test/outage")]
async fn job(ctx: &Ctx, event: Job) -> Result<u32, FlowError> {
    let a = slow(ctx, event.n).await?;
    Ok(quick(ctx, a).await?)
}

async fn kill_connections(admin: &PgPool, database: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid()) AS killed",
    )
    .bind(database)
    .fetch_one(admin)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_run_completes_after_all_connections_were_killed_mid_step() {
    let (store, url) = common::pg_store().await;
    let database = url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    // The admin pool lives on the server's own database, so killing spares it.
    let admin = PgPool::connect(&common::server_url()).await.unwrap();
    let builder = common::worker(&store)
        .register::<job>()
        .concurrency(16)
        .lease(Duration::from_secs(2))
        .renew_every(Duration::from_millis(500));
    let _worker = common::spawn_worker(builder).await;
    let client = flow::Client::new(store);
    let receipt = client.send_batch((0..40).map(|n| Job { n })).await.unwrap();

    common::eventually(Duration::from_secs(30), "steps to be running", || async {
        STARTED.load(Ordering::SeqCst) >= 8
    })
    .await;
    // An outage long enough to break statements in flight, not only idle connections.
    let mut killed = 0;
    let outage = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < outage {
        killed += kill_connections(&admin, &database).await;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(killed > 10, "only {killed} connections were killed");

    for (_, run) in &receipt.runs {
        let view = client.wait(*run, Duration::from_secs(60)).await.unwrap();
        assert_eq!(view.status, flow::RunStatus::Completed, "{view:?}");
        assert_eq!(view.steps.len(), 2);
    }
    let outputs: Vec<u32> = {
        let mut all = Vec::new();
        for (_, run) in &receipt.runs {
            all.push(
                client
                    .result::<u32>(*run, Duration::from_secs(1))
                    .await
                    .unwrap(),
            );
        }
        all.sort();
        all
    };
    assert_eq!(outputs, (1..=40).collect::<Vec<u32>>());
}
