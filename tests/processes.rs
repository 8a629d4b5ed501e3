//! Real worker processes: SIGKILLed mid-step several times, sharing work, and
//! shutting down on SIGTERM.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flow::NewEvent;
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(60);

fn start_worker(url: &str, id: &str, slow_ms: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_flow-test-worker"))
        .env("DATABASE_URL", url)
        .env("FLOW_TEST_WORKER_ID", id)
        .env("FLOW_TEST_LEASE_MS", "1000")
        .env("FLOW_TEST_SLOW_MS", slow_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the test worker")
}

async fn setup() -> (flow::Client, PgPool) {
    let (store, url) = common::pg_store().await;
    let pool = PgPool::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TABLE test_effects (run_id uuid NOT NULL, step text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())",
    )
    .execute(&pool)
    .await
    .unwrap();
    (flow::Client::new(store), pool)
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn wait_for_functions(pool: &PgPool) {
    common::eventually(WAIT, "the worker to announce its functions", || async {
        count(pool, "SELECT count(*) FROM flow.functions WHERE id = 'etl'").await == 1
    })
    .await;
}

async fn send_items(client: &flow::Client, n: i64) -> Vec<flow::RunId> {
    let events =
        (0..n).map(|i| NewEvent::raw("test/work.item", serde_json::json!({ "n": i })).unwrap());
    let receipt = client.send_batch(events).await.unwrap();
    assert_eq!(receipt.runs.len() as i64, n);
    receipt.runs.into_iter().map(|(_, run)| run).collect()
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn report(child: Child) -> (u64, String) {
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "worker exited with {}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("REPORT"))
        .unwrap_or_else(|| panic!("no report in {stdout:?}"));
    let finished = line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("finished="))
        .and_then(|v| v.parse().ok())
        .unwrap();
    (finished, line.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_step_never_reruns_a_completed_step() {
    let (client, pool) = setup().await;
    let url = common::with_database(&common::server_url(), &current_database(&pool).await);
    let mut worker = start_worker(&url, "victim-0", 300);
    wait_for_functions(&pool).await;
    let runs = send_items(&client, 40).await;

    let kills = 3;
    for round in 1..=kills {
        // Checked in the store first: this process holds a run that has a checkpoint
        // and a step body that started but has none yet.
        let owner = format!("victim-{}", round - 1);
        common::eventually(WAIT, "a run to be mid-step", || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM flow.runs r
                 WHERE r.status = 'running' AND r.lease_owner = $1
                   AND EXISTS (SELECT 1 FROM flow.steps s WHERE s.run_id = r.id)
                   AND EXISTS (SELECT 1 FROM test_effects e WHERE e.run_id = r.id AND NOT EXISTS
                       (SELECT 1 FROM flow.steps s WHERE s.run_id = e.run_id AND s.key = e.step))",
            )
            .bind(&owner)
            .fetch_one(&pool)
            .await
            .unwrap()
                > 0
        })
        .await;
        worker.kill().unwrap(); // SIGKILL
        worker.wait().unwrap();
        worker = start_worker(&url, &format!("victim-{round}"), 300);
    }

    for run in &runs {
        let view = client.wait(*run, WAIT).await.unwrap();
        assert_eq!(view.status, flow::RunStatus::Completed, "{view:?}");
    }
    sigterm(&worker);
    report(worker);

    // Every step of every run ran, and none started again after its checkpoint.
    let steps = count(
        &pool,
        "SELECT count(DISTINCT (run_id, step)) FROM test_effects",
    )
    .await;
    assert_eq!(steps, 40 * 3);
    let after_checkpoint = count(
        &pool,
        "SELECT count(*) FROM test_effects e JOIN flow.steps s ON s.run_id = e.run_id AND s.key = e.step
         WHERE e.at > s.finished_at",
    )
    .await;
    assert_eq!(after_checkpoint, 0, "a completed step ran again");
    let reruns = count(
        &pool,
        "SELECT count(*) - count(DISTINCT (run_id, step)) FROM test_effects",
    )
    .await;
    assert!(
        reruns > 0,
        "the kills interrupted no step; the test proved nothing"
    );
    let outputs: Vec<i64> = sqlx::query_scalar("SELECT (output)::bigint FROM flow.runs ORDER BY 1")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(outputs, (0..40).map(|n| n * 2 + 1).collect::<Vec<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_share_the_work_and_stop_cleanly_on_sigterm() {
    let (client, pool) = setup().await;
    let url = common::with_database(&common::server_url(), &current_database(&pool).await);
    let a = start_worker(&url, "a", 5);
    let b = start_worker(&url, "b", 5);
    wait_for_functions(&pool).await;
    common::eventually(WAIT, "both workers to listen", || async {
        count(&pool, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = current_database()").await
            >= 2
    })
    .await;
    let runs = send_items(&client, 200).await;
    for run in &runs {
        assert_eq!(
            client.wait(*run, WAIT).await.unwrap().status,
            flow::RunStatus::Completed
        );
    }
    sigterm(&a);
    sigterm(&b);
    let (finished_a, line_a) = report(a);
    let (finished_b, line_b) = report(b);
    assert!(
        finished_a > 0 && finished_b > 0,
        "each process finished runs: {line_a} / {line_b}"
    );
    assert_eq!(finished_a + finished_b, 200, "{line_a} / {line_b}");
    let reruns = count(
        &pool,
        "SELECT count(*) - count(DISTINCT (run_id, step)) FROM test_effects",
    )
    .await;
    assert_eq!(reruns, 0, "no step ran twice without a failure");
}

async fn current_database(pool: &PgPool) -> String {
    sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .unwrap()
}
