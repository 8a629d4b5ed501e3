//! A fresh PostgreSQL database per test (on DATABASE_URL's server, else localhost;
//! scripts/test.sh sets it).

use sqlx::Connection;

/// The server's URL.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates a database of its own; returns its URL.
pub async fn fresh_database() -> String {
    let server = server_url();
    let name = format!("flow_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "these tests need PostgreSQL at {}: {e}",
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
    format!("{}/{name}{query}", &base[..host_end])
}

/// A store on `url`, with a small pool.
pub async fn connect(url: &str) -> flow_postgres::PgStore {
    let options = flow_postgres::PgStoreOptions {
        max_connections: 4,
        ..Default::default()
    };
    flow_postgres::PgStore::connect_with(url, options)
        .await
        .expect("connect to the fresh database")
}
