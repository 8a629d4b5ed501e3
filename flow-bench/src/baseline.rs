//! The physical limit: what PostgreSQL does for the same shape of work without
//! flow, from the same number of client connections, in the same run; measured
//! twice, by a loop of our own on sqlx and by `pgbench` itself.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

/// The statements both baselines run.
const INSERT: &str = "INSERT INTO bench_rows (payload) VALUES ('{\"n\": 1}')";

/// Creates the tables the baselines write to.
pub async fn prepare(url: &str) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_rows (id bigserial PRIMARY KEY, payload jsonb NOT NULL)",
    )
    .execute(&mut conn)
    .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_counters (id integer PRIMARY KEY, n bigint NOT NULL)",
    )
    .execute(&mut conn)
    .await?;
    sqlx::query("INSERT INTO bench_counters SELECT g, 0 FROM generate_series(0, 63) g ON CONFLICT DO NOTHING")
        .execute(&mut conn)
        .await?;
    conn.close().await
}

/// Transactions per second from `clients` connections for `duration`, each client
/// on a connection of its own, as pgbench does (a pool would ping the server
/// around every statement): a single-row INSERT (autocommit), or with
/// `with_update` an INSERT and an UPDATE of one row in one transaction.
pub async fn transactions_per_second(
    url: &str,
    clients: u32,
    duration: Duration,
    with_update: bool,
) -> Result<f64, sqlx::Error> {
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(PgConnection::connect(url).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (client, mut conn) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while started.elapsed() < duration {
                if with_update {
                    let mut tx = conn.begin().await?;
                    sqlx::query(INSERT).execute(&mut *tx).await?;
                    sqlx::query("UPDATE bench_counters SET n = n + 1 WHERE id = $1")
                        .bind(client as i32)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                } else {
                    sqlx::query(INSERT).execute(&mut conn).await?;
                }
                done += 1;
            }
            conn.close().await?;
            Ok::<u64, sqlx::Error>(done)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("baseline task")?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// pgbench's single-row INSERT rate from `clients` connections, or why it could
/// not be measured (pgbench not installed, or it failed).
pub fn pgbench(url: &str, clients: u32, duration: Duration) -> Result<f64, String> {
    let program = find_pgbench().ok_or(
        "pgbench not found (it ships with the PostgreSQL server binaries: put it on PATH)",
    )?;
    let script = std::env::temp_dir().join(format!("flow-bench-{}.sql", std::process::id()));
    std::fs::write(&script, format!("{INSERT};\n")).map_err(|e| e.to_string())?;
    let threads = clients.min(
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
    );
    let output = Command::new(&program)
        .args(["-n", "-M", "prepared", "-f"])
        .arg(&script)
        .args(["-c", &clients.to_string(), "-j", &threads.to_string()])
        .args(["-T", &duration.as_secs().max(1).to_string()])
        .arg(url)
        .output();
    let _ = std::fs::remove_file(&script);
    let output = output.map_err(|e| format!("could not start {}: {e}", program.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "pgbench failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    tps_of(&stdout).ok_or_else(|| format!("pgbench printed no tps line:\n{stdout}"))
}

/// The rate from pgbench's report line `tps = 7928.1 (without initial connection time)`.
fn tps_of(report: &str) -> Option<f64> {
    report
        .lines()
        .find_map(|line| line.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// pgbench on PATH, else beside the server binaries.
fn find_pgbench() -> Option<PathBuf> {
    let on_path = Command::new("pgbench")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if on_path {
        return Some("pgbench".into());
    }
    let bindir = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let versioned = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"));
    bindir
        .into_iter()
        .chain(versioned)
        .map(|dir| dir.join("pgbench"))
        .find(|path| path.is_file())
}

#[cfg(test)]
mod tests {
    use super::tps_of;

    #[test]
    fn the_rate_is_read_from_pgbenchs_report() {
        let report = "transaction type: x.sql\nnumber of clients: 8\n\
                      latency average = 1.017 ms\n\
                      initial connection time = 12.345 ms\n\
                      tps = 7867.561236 (without initial connection time)\n";
        assert_eq!(tps_of(report), Some(7867.561236));
        assert_eq!(tps_of("pgbench: error: connection refused"), None);
    }
}
