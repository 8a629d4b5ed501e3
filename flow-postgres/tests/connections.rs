//! The connections a store holds for its hot statements: killed by the server, they
//! are replaced without the caller seeing an error where the statement is safe to
//! repeat; a send whose answer is lost after its commit is neither lost nor stored
//! twice.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::json;
use sqlx::Connection;
use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use flow_core::store::{FunctionInfo, ReadStore, Store};
use flow_core::{NewEvent, Now, RunId};
use flow_postgres::PgStore;

async fn announce(store: &PgStore, functions: &[(&str, &str)]) {
    let infos: Vec<FunctionInfo> = functions
        .iter()
        .map(|(id, trigger)| FunctionInfo::new(*id, *trigger))
        .collect();
    store
        .register_functions(&infos, Now::Database)
        .await
        .unwrap();
}

async fn count(url: &str, sql: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_right_after_the_server_killed_every_connection_pass() {
    let url = common::fresh_database().await;
    let store = common::connect(&url).await;
    announce(&store, &[("f", "test/held")]).await;
    let first = store
        .send(
            vec![NewEvent::raw("test/held", json!({})).unwrap()],
            Now::Database,
        )
        .await
        .unwrap();
    let database = url.rsplit('/').next().unwrap().to_owned();
    let mut admin = sqlx::PgConnection::connect(&common::server_url())
        .await
        .unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid()) AS killed",
    )
    .bind(&database)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(killed >= 1, "no connection of the store was open");

    // At once, well inside the second after which an idle connection is pinged: a
    // read, and a send, each tried again on a new connection.
    let view = store.run(first.runs[0].1).await.unwrap().unwrap();
    assert_eq!(view.function_id, "f");
    let second = store
        .send(
            vec![NewEvent::raw("test/held", json!({})).unwrap()],
            Now::Database,
        )
        .await
        .unwrap();
    assert_eq!(second.runs.len(), 1);
    assert_eq!(count(&url, "SELECT count(*) FROM flow.events").await, 2);
}

/// A TCP proxy in front of the server that, once armed with a pattern, closes the
/// connection whose next reply from the server holds it, instead of passing the
/// reply on: the statement committed, and its answer is lost.
struct Proxy {
    addr: SocketAddr,
    cut_on: Arc<Mutex<Option<Vec<u8>>>>,
}

impl Proxy {
    async fn start(upstream: (String, u16)) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut_on: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        let armed = cut_on.clone();
        tokio::spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                let server = TcpStream::connect(upstream.clone()).await.unwrap();
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let armed = armed.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match server_read.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let cut = {
                            let mut armed = armed.lock().unwrap();
                            let hit = armed.as_ref().is_some_and(|pattern| {
                                buf[..n].windows(pattern.len()).any(|w| w == pattern)
                            });
                            if hit {
                                *armed = None;
                            }
                            hit
                        };
                        if cut || client_write.write_all(&buf[..n]).await.is_err() {
                            // Dropping the halves closes the client's side.
                            return;
                        }
                    }
                });
            }
        });
        Proxy { addr, cut_on }
    }

    fn arm(&self, pattern: &[u8]) {
        *self.cut_on.lock().unwrap() = Some(pattern.to_vec());
    }

    fn fired(&self) -> bool {
        self.cut_on.lock().unwrap().is_none()
    }
}

/// `url` with its host and port replaced by the proxy's, without TLS (the proxy
/// reads the replies).
fn through(url: &str, proxy: SocketAddr) -> String {
    let authority = url.find("://").unwrap() + 3;
    let at = url[authority..]
        .find('@')
        .map_or(authority, |i| authority + i + 1);
    let path = url[at..].find('/').map_or(url.len(), |i| at + i);
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!(
        "{}{proxy}{}{joiner}sslmode=disable",
        &url[..at],
        &url[path..]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_whose_answer_is_lost_after_its_commit_is_stored_once() {
    let url = common::fresh_database().await;
    let options: PgConnectOptions = url.parse().unwrap();
    let proxy = Proxy::start((options.get_host().to_owned(), options.get_port())).await;
    let store = common::connect(&through(&url, proxy.addr)).await;
    announce(
        &store,
        &[
            ("fn-one", "test/lost-answer"),
            ("fn-two", "test/lost-answer"),
        ],
    )
    .await;
    // Opens the held connection the send will take, so the cut hits the send.
    store.run(RunId(uuid::Uuid::now_v7())).await.unwrap();

    // Without producer ids: one statement, whose reply names the functions.
    proxy.arm(b"fn-one");
    let events = vec![
        NewEvent::raw("test/lost-answer", json!({"n": 1})).unwrap(),
        NewEvent::raw("test/lost-answer", json!({"n": 2})).unwrap(),
        NewEvent::raw("test/unmatched", json!({"n": 3})).unwrap(),
    ];
    let receipt = store.send(events, Now::Database).await.unwrap();
    assert!(proxy.fired(), "the proxy never cut the send's answer");
    assert_eq!(count(&url, "SELECT count(*) FROM flow.events").await, 3);
    assert_eq!(count(&url, "SELECT count(*) FROM flow.runs").await, 4);
    assert_eq!(receipt.event_ids.len(), 3);
    assert_eq!(receipt.duplicates, 0);
    assert_eq!(receipt.unmatched, vec!["test/unmatched".to_owned()]);
    // In the order sent, then by function.
    let functions: Vec<String> = {
        let mut names = Vec::new();
        for (event, run) in &receipt.runs {
            let view = store.run(*run).await.unwrap().unwrap();
            assert_eq!(view.event_id, *event);
            names.push(view.function_id);
        }
        names
    };
    assert_eq!(functions, ["fn-one", "fn-two", "fn-one", "fn-two"]);
    assert_eq!(receipt.runs[0].0, receipt.event_ids[0]);
    assert_eq!(receipt.runs[2].0, receipt.event_ids[1]);

    // With producer ids: a transaction, cut at its COMMIT's reply. One event is a
    // duplicate within the batch, one of an event sent before.
    store
        .send(
            vec![
                NewEvent::raw("test/lost-answer", json!({}))
                    .unwrap()
                    .id("earlier"),
            ],
            Now::Database,
        )
        .await
        .unwrap();
    let earlier: uuid::Uuid = {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query_scalar("SELECT event_id FROM flow.event_ids WHERE producer_id = 'earlier'")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    proxy.arm(b"COMMIT\0");
    let events = vec![
        NewEvent::raw("test/lost-answer", json!({}))
            .unwrap()
            .id("new"),
        NewEvent::raw("test/lost-answer", json!({}))
            .unwrap()
            .id("new"),
        NewEvent::raw("test/lost-answer", json!({}))
            .unwrap()
            .id("earlier"),
    ];
    let receipt = store.send(events, Now::Database).await.unwrap();
    assert!(proxy.fired(), "the proxy never cut the commit's answer");
    assert_eq!(count(&url, "SELECT count(*) FROM flow.events").await, 5);
    assert_eq!(receipt.duplicates, 2);
    assert_eq!(receipt.event_ids[0], receipt.event_ids[1]);
    assert_eq!(receipt.event_ids[2].0, earlier);
    assert_eq!(receipt.runs.len(), 2);
    assert!(receipt.runs.iter().all(|(e, _)| *e == receipt.event_ids[0]));
}

/// sqlx 0.9.0 leaves Nagle's algorithm on, which holds a statement of more than
/// one TCP segment for the server's delayed ACK (40 ms): every connection the
/// store opens over TCP has it off, the held ones, the pool's and the listener's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_the_store_opens_has_nagle_off() {
    let url = common::fresh_database().await;
    let store = common::connect(&url).await;
    announce(&store, &[("f", "test/nagle")]).await;
    // A send on a held connection, a connection of the pool held here, and the
    // LISTEN connection of a wait.
    let receipt = store
        .send(
            vec![NewEvent::raw("test/nagle", json!({})).unwrap()],
            Now::Database,
        )
        .await
        .unwrap();
    let mut pooled = store.pool().acquire().await.unwrap();
    let pooled_port: Option<i32> = sqlx::query_scalar("SELECT inet_client_port()")
        .fetch_one(&mut *pooled)
        .await
        .unwrap();
    let pooled_port = pooled_port.expect("the tests connect over TCP");
    let _watch = store.watch_finish(receipt.runs[0].1).await.unwrap();
    let database = url.rsplit('/').next().unwrap().to_owned();
    let mut admin = sqlx::PgConnection::connect(&common::server_url())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let ports = loop {
        let rows: Vec<(i32, String)> = sqlx::query_as(
            "SELECT client_port, query FROM pg_stat_activity
             WHERE datname = $1 AND client_port IS NOT NULL",
        )
        .bind(&database)
        .fetch_all(&mut admin)
        .await
        .unwrap();
        if rows.iter().any(|(_, q)| q.starts_with("LISTEN")) {
            break rows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no LISTEN connection: {rows:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(ports.iter().any(|(p, _)| *p == pooled_port), "{ports:?}");
    assert!(ports.len() >= 3, "held, pooled and listening: {ports:?}");
    for (port, query) in ports {
        let port = u16::try_from(port).unwrap();
        assert_eq!(
            flow_postgres::tcp_nodelay_of_local_port(port),
            Some(true),
            "the connection from port {port} (last statement: {query}) has Nagle's algorithm on"
        );
    }
}
