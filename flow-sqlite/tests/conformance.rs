//! The store conformance suite of flow-core, on a fresh SQLite file per check.

async fn fresh() -> flow_sqlite::SqliteStore {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("conformance");
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!(
        "sqlite://{}/{}.db",
        dir.display(),
        uuid::Uuid::new_v4().simple()
    );
    flow_sqlite::SqliteStore::connect(&url)
        .await
        .expect("open a fresh file")
}

flow_core::store_conformance_tests!(fresh());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_row_does_not_read_fails_alone() {
    flow_core::testing::a_run_whose_row_does_not_read_fails_alone(
        fresh().await,
        async |store: flow_sqlite::SqliteStore, event: flow_core::EventId| {
            // Text that is not JSON, where JSON is stored.
            sqlx::query("UPDATE flow_events SET data = 'not json' WHERE id = ?")
                .bind(event.0.to_string())
                .execute(store.pool())
                .await
                .unwrap();
        },
    )
    .await;
}
