//! The store conformance suite of flow-core, on a fresh PostgreSQL database per
//! check (on DATABASE_URL's server, else localhost; scripts/test.sh sets it).

use sqlx::Connection;

async fn fresh() -> flow_postgres::PgStore {
    let server = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("flow_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the conformance suite needs PostgreSQL at {}: {e}",
                flow_postgres::redact(&server)
            )
        });
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    // The same server, database `name`.
    let (base, query) = server
        .split_once('?')
        .map_or((server.as_str(), String::new()), |(b, q)| {
            (b, format!("?{q}"))
        });
    let authority = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[authority..]
        .find('/')
        .map_or(base.len(), |i| i + authority);
    let url = format!("{}/{name}{query}", &base[..host_end]);
    let options = flow_postgres::PgStoreOptions {
        max_connections: 4,
        ..Default::default()
    };
    flow_postgres::PgStore::connect_with(&url, options)
        .await
        .expect("connect to the fresh database")
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
