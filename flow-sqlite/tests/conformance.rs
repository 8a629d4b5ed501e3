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
