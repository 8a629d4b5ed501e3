//! Test support: a fresh database per test, a worker in the background, counters.
#![allow(dead_code)]

pub mod faulty;

use std::future::Future;
use std::time::Duration;

use flow::{AnyStore, PgStore, PgStoreOptions, WorkerBuilder};
use sqlx::Connection;

/// The server the tests use: DATABASE_URL (the test script sets it), else localhost.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates an empty database of its own for one test; returns its URL.
pub async fn fresh_database() -> String {
    let server = server_url();
    let name = format!("flow_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "tests need PostgreSQL at {}: {e}",
                flow_postgres_redact(&server)
            )
        });
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create the test database");
    conn.close().await.ok();
    with_database(&server, &name)
}

fn flow_postgres_redact(url: &str) -> String {
    flow_postgres::redact(url)
}

/// `url` pointing at database `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let host = match path_start {
        Some(i) => &base[..i],
        None => base,
    };
    format!("{host}/{name}{query}")
}

/// Which backend the behaviour tests run against: FLOW_TEST_BACKEND=sqlite runs them
/// on an SQLite file of their own (scripts/test.sh runs them on both).
pub fn backend() -> String {
    std::env::var("FLOW_TEST_BACKEND").unwrap_or_else(|_| "postgres".into())
}

/// A store of the backend under test, on a fresh database (or file) of its own.
pub async fn store() -> (AnyStore, String) {
    if backend() == "sqlite" {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sqlite");
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!(
            "sqlite://{}/{}.db",
            dir.display(),
            uuid::Uuid::new_v4().simple()
        );
        let store = flow::SqliteStore::connect(&url)
            .await
            .expect("open the test file");
        return (AnyStore::from(store), url);
    }
    pg_store().await
}

/// A store on a fresh PostgreSQL database with a small pool (the server allows 100
/// connections).
pub async fn pg_store() -> (AnyStore, String) {
    // RUST_LOG=flow_core=debug shows the life of each run.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let url = fresh_database().await;
    let store = PgStore::connect_with(
        &url,
        PgStoreOptions {
            max_connections: 6,
            acquire_timeout: Duration::from_secs(30),
        },
    )
    .await
    .expect("connect to the test database");
    (AnyStore::from(store), url)
}

/// A builder with test settings: fallback poll of one hour, so every wake-up must
/// come from a notification or a due time the worker read.
pub fn worker(store: &AnyStore) -> WorkerBuilder<AnyStore> {
    flow::Worker::builder(store.clone())
        .poll_interval(Duration::from_secs(3600))
        .concurrency(8)
}

/// Runs a worker in the background until it is stopped or dropped. The worker has
/// announced its functions when this returns.
pub async fn spawn_worker(builder: WorkerBuilder<AnyStore>) -> flow::RunningWorker {
    let worker = builder.build().expect("build the worker");
    worker.announce().await.expect("announce the functions");
    worker.spawn()
}

/// A test clock, at a fixed start, that moves only when a test advances it.
pub fn clock() -> flow::ManualClock {
    flow::ManualClock::new("2026-03-01T09:00:00Z".parse().unwrap())
}

/// A run's status, read through the client.
pub async fn status(client: &flow::Client, run: flow::RunId) -> flow::RunStatus {
    client.run(run).await.unwrap().unwrap().status
}

/// Polls `check` until it is true, for at most `timeout` (never asserts a time).
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("gave up waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `postgres` or `sqlite` (the same statement in each dialect) on the store's
/// own pool with the run's id as its one parameter: for tests that change rows
/// behind the engine's back, as a bad restore or a schema drift would.
pub async fn execute_for_run(
    store: &AnyStore,
    run: flow::RunId,
    postgres: &'static str,
    sqlite: &'static str,
) {
    match store {
        AnyStore::Postgres(pg) => {
            sqlx::query(postgres)
                .bind(run.0)
                .execute(pg.pool())
                .await
                .unwrap();
        }
        AnyStore::Sqlite(lite) => {
            sqlx::query(sqlite)
                .bind(run.0.to_string())
                .execute(lite.pool())
                .await
                .unwrap();
        }
        _ => unreachable!("a backend these tests do not know"),
    }
}

/// A run's status, failure kind and error, read from its row (for a run whose
/// view does not read).
pub async fn run_row(
    store: &AnyStore,
    run: flow::RunId,
) -> (String, Option<String>, Option<String>) {
    match store {
        AnyStore::Postgres(pg) => {
            sqlx::query_as("SELECT status, error_kind, error FROM flow.runs WHERE id = $1")
                .bind(run.0)
                .fetch_one(pg.pool())
                .await
                .unwrap()
        }
        AnyStore::Sqlite(lite) => {
            sqlx::query_as("SELECT status, error_kind, error FROM flow_runs WHERE id = ?")
                .bind(run.0.to_string())
                .fetch_one(lite.pool())
                .await
                .unwrap()
        }
        _ => unreachable!("a backend these tests do not know"),
    }
}

/// A count read with `postgres` or `sqlite` (the same query in each dialect, no
/// parameters; the tests' own text, so asserted safe), for what the client does
/// not list.
pub async fn count(store: &AnyStore, postgres: &str, sqlite: &str) -> i64 {
    match store {
        AnyStore::Postgres(pg) => sqlx::query_scalar(sqlx::AssertSqlSafe(postgres))
            .fetch_one(pg.pool())
            .await
            .unwrap(),
        AnyStore::Sqlite(lite) => sqlx::query_scalar(sqlx::AssertSqlSafe(sqlite))
            .fetch_one(lite.pool())
            .await
            .unwrap(),
        _ => unreachable!("a backend these tests do not know"),
    }
}

/// The text values of one column read with `postgres` or `sqlite` (as
/// [`count`]), in the order the query gives.
pub async fn strings(store: &AnyStore, postgres: &str, sqlite: &str) -> Vec<String> {
    match store {
        AnyStore::Postgres(pg) => sqlx::query_scalar(sqlx::AssertSqlSafe(postgres))
            .fetch_all(pg.pool())
            .await
            .unwrap(),
        AnyStore::Sqlite(lite) => sqlx::query_scalar(sqlx::AssertSqlSafe(sqlite))
            .fetch_all(lite.pool())
            .await
            .unwrap(),
        _ => unreachable!("a backend these tests do not know"),
    }
}

/// Eight claimers of one run each of `limited`'s functions, let go at once (a
/// barrier): how many runs they claimed between them. What a limit must hold
/// against claimers that race for one key.
pub async fn race_eight_claimers(
    store: &AnyStore,
    limited: &std::sync::Arc<flow::flow_control::Limited>,
) -> usize {
    use flow::store::{ClaimRequest, Store};
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let claimers: Vec<_> = (0..8)
        .map(|i| {
            let (store, limited, start) = (store.clone(), limited.clone(), start.clone());
            tokio::spawn(async move {
                let owner: std::sync::Arc<str> = format!("claimer-{i}").into();
                start.wait().await;
                let request = ClaimRequest {
                    owner: &owner,
                    functions: &[],
                    limited: &limited,
                    max: 1,
                    lease: Duration::from_secs(600),
                };
                store
                    .claim(request, flow::Now::Database)
                    .await
                    .unwrap()
                    .len()
            })
        })
        .collect();
    let mut claimed = 0;
    for claimer in claimers {
        claimed += claimer.await.unwrap();
    }
    claimed
}
