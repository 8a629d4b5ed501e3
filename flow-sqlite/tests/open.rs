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
    assert_eq!(versions, [1, 2]);
    // Opening it again (a restart) applies nothing and keeps the data.
    drop(store);
    let again = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let versions: i64 = sqlx::query_scalar("SELECT count(*) FROM flow_schema_migrations")
        .fetch_one(again.pool())
        .await
        .unwrap();
    assert_eq!(versions, 2);
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
