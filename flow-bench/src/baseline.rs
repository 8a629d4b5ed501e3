//! The physical limit: what PostgreSQL does for the same shape of work without
//! flow, from the same number of client connections, in the same run.

use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;

/// Transactions per second from `clients` connections for `duration`: each one a
/// single-row INSERT (autocommit), or with `with_update` an INSERT and an UPDATE of
/// one row in one transaction.
pub async fn transactions_per_second(
    url: &str,
    clients: u32,
    duration: Duration,
    with_update: bool,
) -> Result<f64, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(clients)
        .min_connections(clients)
        .connect(url)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_rows (id bigserial PRIMARY KEY, payload jsonb NOT NULL)",
    )
    .execute(&pool)
    .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_counters (id integer PRIMARY KEY, n bigint NOT NULL)",
    )
    .execute(&pool)
    .await?;
    sqlx::query("INSERT INTO bench_counters SELECT g, 0 FROM generate_series(0, 63) g ON CONFLICT DO NOTHING")
        .execute(&pool)
        .await?;
    let payload = serde_json::json!({"n": 1});
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let pool = pool.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while started.elapsed() < duration {
                if with_update {
                    let mut tx = pool.begin().await?;
                    sqlx::query("INSERT INTO bench_rows (payload) VALUES ($1)")
                        .bind(&payload)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("UPDATE bench_counters SET n = n + 1 WHERE id = $1")
                        .bind(client as i32)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                } else {
                    sqlx::query("INSERT INTO bench_rows (payload) VALUES ($1)")
                        .bind(&payload)
                        .execute(&pool)
                        .await?;
                }
                done += 1;
            }
            Ok::<u64, sqlx::Error>(done)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("baseline task")?;
    }
    let tps = total as f64 / started.elapsed().as_secs_f64();
    pool.close().await;
    Ok(tps)
}
