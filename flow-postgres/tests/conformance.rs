//! The store conformance suite of flow-core, on a fresh PostgreSQL database per
//! check (on DATABASE_URL's server, else localhost; scripts/test.sh sets it).

mod common;

async fn fresh() -> flow_postgres::PgStore {
    common::connect(&common::fresh_database().await).await
}

flow_core::store_conformance_tests!(fresh());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_row_does_not_read_fails_alone() {
    flow_core::testing::a_run_whose_row_does_not_read_fails_alone(
        fresh().await,
        async |store: flow_postgres::PgStore, event: flow_core::EventId| {
            // A NULL where the engine expects JSON: the schema allows it no more.
            sqlx::query("ALTER TABLE flow.events ALTER COLUMN data DROP NOT NULL")
                .execute(store.pool())
                .await
                .unwrap();
            sqlx::query("UPDATE flow.events SET data = NULL WHERE id = $1")
                .bind(event.0)
                .execute(store.pool())
                .await
                .unwrap();
        },
    )
    .await;
}
