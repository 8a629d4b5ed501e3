//! The rows of `flow.run_watchers` that ask for a run's finish to be announced:
//! the finishing commit deletes them, a watch that ends first deletes its own, and
//! a watcher whose listening connection broke is told to read its run again.

mod common;

use std::time::Duration;

use serde_json::json;
use sqlx::Connection;

use flow_core::store::{
    ClaimRequest, FunctionInfo, Lease, Next, Outcome, ReadStore, Store, Transition,
};
use flow_core::{NewEvent, Now, RunId};
use flow_postgres::PgStore;

async fn started_runs(store: &PgStore, n: i64) -> Vec<Lease> {
    let info = FunctionInfo::new("a", "t/watched");
    store
        .register_functions(&[info], Now::Database)
        .await
        .unwrap();
    let events = (0..n)
        .map(|i| NewEvent::raw("t/watched", json!({ "n": i })).unwrap())
        .collect();
    store.send(events, Now::Database).await.unwrap();
    let owner = "w".into();
    let functions = vec!["a".to_owned()];
    let request = ClaimRequest {
        owner: &owner,
        functions: &functions,
        limited: flow_core::flow_control::Limited::none(),
        max: n as usize,
        lease: Duration::from_secs(30),
    };
    let claimed = store.claim(request, Now::Database).await.unwrap();
    assert_eq!(claimed.len(), n as usize);
    claimed.into_iter().map(|c| c.lease).collect()
}

async fn watch_rows(url: &str, run: RunId) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM flow.run_watchers WHERE run_id = $1")
        .bind(run.0)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_finish_deletes_its_watch_rows_and_an_ended_watch_its_own() {
    let url = common::fresh_database().await;
    let store = common::connect(&url).await;
    let leases = started_runs(&store, 2).await;
    let (finishing, going_on) = (&leases[0], &leases[1]);
    let mut first = store.watch_finish(finishing.run_id).await.unwrap();
    let mut second = store.watch_finish(finishing.run_id).await.unwrap();
    let other = store.watch_finish(going_on.run_id).await.unwrap();
    assert_eq!(watch_rows(&url, finishing.run_id).await, 2);
    assert_eq!(watch_rows(&url, going_on.run_id).await, 1);

    let done = Transition::next(Next::Finish(Outcome::Completed(json!("done"))));
    let batch = [
        (finishing.clone(), done),
        (going_on.clone(), Transition::CONTINUE),
    ];
    store
        .commit(&batch, Duration::from_secs(30), Now::Database)
        .await
        .unwrap();
    // Deleted by the finishing statement itself.
    assert_eq!(watch_rows(&url, finishing.run_id).await, 0);
    for watch in [&mut first, &mut second] {
        tokio::time::timeout(Duration::from_secs(10), watch.announced())
            .await
            .expect("both watches of the run hear of its finish");
    }

    drop(other);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while watch_rows(&url, going_on.run_id).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "an ended watch deletes its row"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_watch_reads_again_when_its_listening_connection_breaks() {
    let url = common::fresh_database().await;
    let store = common::connect(&url).await;
    let leases = started_runs(&store, 1).await;
    let mut watch = store.watch_finish(leases[0].run_id).await.unwrap();
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), watch.announced())
        .await
        .expect("a finish announced meanwhile may be lost: the watch says to read again");
}
