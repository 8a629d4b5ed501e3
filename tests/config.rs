//! Starting up: database URLs that are wrong or unreachable, migrations raced by
//! two workers, duplicate function ids, and nothing to serve.

mod common;

use std::time::Duration;

use flow::prelude::*;
use flow::{AnyStore, Connect, PgStore};

#[tokio::test]
async fn an_unreachable_database_is_a_one_line_error_without_the_password() {
    // Port 1 on localhost refuses connections at once.
    let err = PgStore::connect_with(
        "postgres://app:hunter2@127.0.0.1:1/prod",
        flow::PgStoreOptions {
            acquire_timeout: Duration::from_secs(5),
            ..Default::default()
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("could not connect to postgres://app:***@127.0.0.1:1/prod"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[tokio::test]
async fn a_wrong_password_or_database_is_reported_the_same_way() {
    let url = common::with_database(&common::server_url(), "flow_no_such_database");
    let err = AnyStore::connect(&url).await.unwrap_err().to_string();
    assert!(
        err.contains("could not connect to") && err.contains("flow_no_such_database"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
}

#[tokio::test]
async fn a_url_of_another_kind_names_the_scheme_and_what_to_write() {
    let err = AnyStore::connect("mysql://root:pw@localhost/app")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`mysql`") && err.contains("postgres://"),
        "{err}"
    );
    assert!(!err.contains("pw@"), "{err}");
    let err = PgStore::connect("redis://:secret@localhost")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a PostgreSQL URL") && !err.contains("secret"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_starting_together_migrate_once() {
    let url = common::fresh_database().await;
    let connects = (0..4).map(|_| PgStore::connect(&url));
    let stores = futures::future::join_all(connects).await;
    for store in &stores {
        assert!(store.is_ok(), "{:?}", store.as_ref().err());
    }
    let pool = stores[0].as_ref().unwrap().pool();
    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT version FROM flow.schema_migrations ORDER BY version")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(versions, (1..=21).collect::<Vec<i32>>());
    // Connecting again applies nothing.
    assert!(flow_postgres::migrate(pool).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_database_of_an_older_schema_is_upgraded_with_its_runs_intact() {
    use sqlx::{Connection, Executor};
    let url = common::fresh_database().await;
    {
        // A database as version 2 left it, with a run half way through.
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        conn.execute(
            "CREATE SCHEMA flow;
             CREATE TABLE flow.schema_migrations
                 (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO flow.schema_migrations (version) VALUES (1), (2);",
        )
        .await
        .unwrap();
        conn.execute(include_str!("../flow-postgres/migrations/0001_init.sql"))
            .await
            .unwrap();
        conn.execute(include_str!(
            "../flow-postgres/migrations/0002_structured_failures.sql"
        ))
        .await
        .unwrap();
        conn.execute(
            "INSERT INTO flow.runs (id, function_id, event_id, status, not_before, created_at, lost_by)
             VALUES ('00000000-0000-0000-0000-000000000001', 'f', gen_random_uuid(), 'sleeping',
                     now(), now(), 'w1');
             INSERT INTO flow.steps (run_id, key, position, kind, output, attempts, started_at,
                                     finished_at)
             VALUES ('00000000-0000-0000-0000-000000000001', 'a', 0, 'run', '1', 1, now(), now()),
                    ('00000000-0000-0000-0000-000000000001', 'b', 1, 'run', '2', 1, now(), now());",
        )
        .await
        .unwrap();
        conn.close().await.unwrap();
    }
    let store = PgStore::connect(&url).await.unwrap();
    let (status, lost_by, step_count): (String, String, i32) = sqlx::query_as(
        "SELECT status, lost_by, step_count FROM flow.runs
         WHERE id = '00000000-0000-0000-0000-000000000001'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), lost_by.as_str(), step_count),
        ("sleeping", "w1", 2),
        "the run keeps its row, and its step count is taken from its records"
    );
    sqlx::query("UPDATE flow.runs SET status = 'blocked'")
        .execute(store.pool())
        .await
        .expect("the new status is allowed");
}

#[tokio::test]
async fn a_schema_newer_than_the_build_is_refused() {
    let url = common::fresh_database().await;
    let store = PgStore::connect(&url).await.unwrap();
    sqlx::query("INSERT INTO flow.schema_migrations (version) VALUES (999)")
        .execute(store.pool())
        .await
        .unwrap();
    let err = PgStore::connect(&url).await.unwrap_err().to_string();
    assert!(
        err.contains("version 999") && err.contains("upgrade flow"),
        "{err}"
    );
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/config")]
pub struct Configured {}

#[function(event = "test/config")]
async fn configured(_ctx: &Ctx, _event: Configured) -> Result<(), FlowError> {
    Ok(())
}

mod elsewhere {
    use flow::prelude::*;

    #[function(event = "test/config")]
    pub async fn configured(_ctx: &Ctx, _event: super::Configured) -> Result<(), FlowError> {
        Ok(())
    }
}

#[tokio::test]
async fn two_functions_with_one_id_fail_at_worker_start_naming_both() {
    let (store, _) = common::store().await;
    let err = common::worker(&store)
        .register::<configured>()
        .register::<elsewhere::configured>()
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("two functions have the id `configured`"),
        "{err}"
    );
    assert!(err.matches("tests/config.rs:").count() == 2, "{err}");
}

#[tokio::test]
async fn every_function_in_the_binary_registers_itself() {
    let ids: Vec<&str> = flow::registered().into_iter().map(|d| d.id).collect();
    assert!(ids.contains(&"configured"), "{ids:?}");
    let (store, _) = common::store().await;
    // Both `configured`s are in this binary: without explicit registration the
    // worker refuses to start.
    let err = flow::Worker::builder(store)
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("two functions have the id `configured`"),
        "{err}"
    );
}
