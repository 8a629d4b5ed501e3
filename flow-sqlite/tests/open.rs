//! What is specific to the SQLite store: URLs, the file it creates, migrations. The
//! behaviour it shares with PostgreSQL is tested by the suite in the flow crate.

use flow_core::Store;
use flow_sqlite::SqliteStore;

fn temp_file(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("open-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[tokio::test]
async fn a_missing_file_is_created_migrated_and_named_in_describe() {
    let path = temp_file("flow.db");
    let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert!(path.exists());
    assert!(
        store.describe().ends_with("/flow.db"),
        "{}",
        store.describe()
    );
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM flow_schema_migrations")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(
        versions,
        [
            1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19
        ]
    );
    // Opening it again (a restart) applies nothing and keeps the data.
    drop(store);
    let again = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM flow_schema_migrations")
        .fetch_one(again.pool())
        .await
        .unwrap();
    assert_eq!(count, versions.len() as i64);
}

#[tokio::test]
async fn urls_of_another_kind_and_unopenable_files_say_what_is_wrong() {
    let err = SqliteStore::connect("postgres://localhost/db")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not an SQLite URL") && err.contains("sqlite://"),
        "{err}"
    );
    let err = SqliteStore::connect("sqlite:///proc/no/such/dir/flow.db")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("could not open sqlite:///proc/no/such/dir/flow.db"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
}

#[tokio::test]
async fn a_schema_newer_than_the_build_is_refused() {
    let path = temp_file("newer.db");
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::connect(&url).await.unwrap();
    sqlx::query("INSERT INTO flow_schema_migrations (version, applied_at) VALUES (999, 0)")
        .execute(store.pool())
        .await
        .unwrap();
    drop(store);
    let err = SqliteStore::connect(&url).await.unwrap_err().to_string();
    assert!(
        err.contains("version 999") && err.contains("upgrade flow"),
        "{err}"
    );
}

#[tokio::test]
async fn a_file_of_an_older_schema_is_upgraded_with_its_runs_intact() {
    use sqlx::{Connection, Executor};
    let path = temp_file("older.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    {
        // A file as version 2 left it, with a run half way through.
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        conn.execute(include_str!("../migrations/0001_init.sql"))
            .await
            .unwrap();
        conn.execute(include_str!("../migrations/0002_structured_failures.sql"))
            .await
            .unwrap();
        conn.execute(
            "CREATE TABLE flow_schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO flow_schema_migrations VALUES (1, 0), (2, 0);
             INSERT INTO flow_runs (id, function_id, event_id, status, not_before, created_at,
                                    error_kind, lost_by)
             VALUES ('00000000-0000-0000-0000-000000000001', 'f', 'e', 'sleeping', 5, 1,
                     NULL, 'w1');
             INSERT INTO flow_steps (run_id, key, position, kind, output, attempts, started_at,
                                     finished_at)
             VALUES ('00000000-0000-0000-0000-000000000001', 'a', 0, 'run', '1', 1, 1, 1),
                    ('00000000-0000-0000-0000-000000000001', 'b', 1, 'run', '2', 1, 1, 1);",
        )
        .await
        .unwrap();
        conn.close().await.unwrap();
    }
    let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let (status, not_before, lost_by, step_count): (String, i64, String, i64) = sqlx::query_as(
        "SELECT status, not_before, lost_by, step_count FROM flow_runs \
         WHERE id = '00000000-0000-0000-0000-000000000001'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(
        (status.as_str(), not_before, lost_by.as_str(), step_count),
        ("sleeping", 5, "w1", 2),
        "the run keeps its row, and its step count is taken from its records"
    );
    sqlx::query("UPDATE flow_runs SET status = 'blocked'")
        .execute(store.pool())
        .await
        .expect("the new status is allowed");
    sqlx::query("UPDATE flow_runs SET status = 'skipped'")
        .execute(store.pool())
        .await
        .expect("a status of migration 16, which rebuilt the table, is allowed");
    // The rebuild kept the table's indexes and triggers.
    let objects: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master
         WHERE tbl_name = 'flow_runs' AND type IN ('index', 'trigger') AND sql IS NOT NULL
         ORDER BY name",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        objects,
        [
            "flow_runs_active",
            "flow_runs_by_event",
            "flow_runs_created_register_cancel_waits",
            "flow_runs_created_set_timeouts",
            "flow_runs_due",
            "flow_runs_due_by_function",
            "flow_runs_end_closes_cancel_waits",
            "flow_runs_ended",
            "flow_runs_leased",
            "flow_runs_timeouts",
        ]
    );
}
