//! The server over real HTTP, on a fresh PostgreSQL database per test (on
//! DATABASE_URL's server, else localhost; scripts/test.sh sets it) and on an
//! SQLite file: events in, runs read back, and every refusal with its status,
//! its reason, and nothing stored.

#[path = "../../flow-postgres/tests/common/mod.rs"]
mod pg;

use flow_core::Now;
use flow_core::store::{FunctionInfo, Store};
use flow_server::{Keys, ServerConfig};
use serde_json::Value;

const EVENT_KEY: &str = "ek_test_producer";
const TOKEN: &str = "tk_test_reader";

fn config() -> ServerConfig {
    ServerConfig::new(Keys::of([EVENT_KEY]), Keys::of([TOKEN]))
}

/// Serves `store` on a free port of 127.0.0.1; returns its base URL.
async fn serve<S: Store + flow_core::ReadStore>(store: S, config: ServerConfig) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(flow_server::serve(
        listener,
        flow_server::router(store, config),
    ));
    url
}

/// A PostgreSQL store on a fresh database, with one function announced
/// (`signup`, on `app/user.signed_up`); its database URL.
async fn pg_store() -> (flow_postgres::PgStore, String) {
    let url = pg::fresh_database().await;
    let store = pg::connect(&url).await;
    store
        .register_functions(
            &[FunctionInfo::new("signup", "app/user.signed_up")],
            Now::Database,
        )
        .await
        .unwrap();
    (store, url)
}

async fn events_stored(store: &flow_postgres::PgStore) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM flow.events")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn post(url: &str, body: &str) -> (u16, Value) {
    let request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    answer(request).await
}

/// The status and JSON body (else the text) of the answer to `request`.
async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.header("authorization", token);
    }
    answer(request).await
}

fn error_of(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_over_http_are_stored_with_their_runs_and_read_back() {
    let (store, _) = pg_store().await;
    let base = serve(store.clone(), config()).await;
    let ingest = format!("{base}/e/{EVENT_KEY}");
    let (status, body) = post(
        &ingest,
        r#"{"name": "app/user.signed_up", "data": {"id": 7}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ids"].as_array().unwrap().len(), 1);
    let run = body["runs"][0]["run"].as_str().unwrap().to_owned();
    assert_eq!(body["runs"][0]["event"], body["ids"][0]);
    // An array, one of them a duplicate of the other by its producer id, one of
    // a name nothing is triggered by (stored, starting nothing).
    let (status, body) = post(
        &ingest,
        r#"[{"name": "app/user.signed_up", "id": "signup-8", "data": {"id": 8}},
            {"name": "app/user.signed_up", "id": "signup-8", "data": {"id": 8}},
            {"name": "app/unknown.thing", "ts": "2026-01-01T00:00:00Z"}]"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ids"].as_array().unwrap().len(), 3);
    assert_eq!(
        body["ids"][0], body["ids"][1],
        "the duplicate names the first"
    );
    assert_eq!(body["duplicates"], 1);
    assert_eq!(body["runs"].as_array().unwrap().len(), 1);
    assert_eq!(events_stored(&store).await, 3);
    // The run, read through the API.
    let (status, view) = get(
        &format!("{base}/api/runs/{run}"),
        Some(&format!("Bearer {TOKEN}")),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["function_id"], "signup");
    assert_eq!(view["status"], "queued");
    let (status, functions) = get(
        &format!("{base}/api/functions"),
        Some(&format!("Bearer {TOKEN}")),
    )
    .await;
    assert_eq!(status, 200, "{functions}");
    assert_eq!(functions[0]["id"], "signup");
    assert_eq!(functions[0]["trigger"], "app/user.signed_up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_events_are_answered_with_the_reason_and_nothing_is_stored() {
    let (store, _) = pg_store().await;
    let mut small = config();
    small.body_limit = 1024;
    let base = serve(store.clone(), small).await;
    let ingest = format!("{base}/e/{EVENT_KEY}");
    let event = r#"{"name": "app/user.signed_up", "data": {"id": 7}}"#;

    let (status, body) = post(&format!("{base}/e/not-a-key"), event).await;
    assert_eq!(status, 401, "{body}");
    assert!(error_of(&body).contains("unknown event key"), "{body}");

    let cases = [
        (
            r#"{"name": "app/user.signed_up", "data": {"id": 7}"#,
            "not JSON",
        ),
        (r#"{"name": 7}"#, "invalid type"),
        (
            r#"{"name": "app/user.signed_up", "dta": {}}"#,
            "unknown field `dta`",
        ),
        (r#"[]"#, "empty array"),
        (r#""app/user.signed_up""#, "a string, not an event"),
        (r#"{"name": "app/user signed up"}"#, "the event:"),
        (r#"{"name": "flow/function.failed"}"#, "flow/"),
        (
            r#"[{"name": "app/a"}, {"name": "app/b", "ts": "tomorrow"}]"#,
            "event 1: `ts`",
        ),
    ];
    for (bad, reason) in cases {
        let (status, body) = post(&ingest, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(error_of(&body).contains(reason), "{bad}: {body}");
    }
    let oversize = format!(
        r#"{{"name": "app/user.signed_up", "data": {{"pad": "{}"}}}}"#,
        "x".repeat(2048)
    );
    let (status, body) = post(&ingest, &oversize).await;
    assert_eq!(status, 413, "{body}");
    assert!(error_of(&body).contains("over the 1024 bytes"), "{body}");
    // Without a key the body is not even read: the key is what is refused.
    let (status, body) = post(&format!("{base}/e/not-a-key"), &oversize).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        events_stored(&store).await,
        0,
        "nothing of a refused request is stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_requests_without_a_token_it_holds() {
    let (store, _) = pg_store().await;
    let base = serve(store, config()).await;
    let functions = format!("{base}/api/functions");
    let (status, body) = get(&functions, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(error_of(&body).contains("needs a token"), "{body}");
    let (status, body) = get(&functions, Some("Bearer tk_wrong")).await;
    assert_eq!(status, 401, "{body}");
    assert!(error_of(&body).contains("unknown API token"), "{body}");
    let (status, body) = get(&functions, Some(&format!("Basic {TOKEN}"))).await;
    assert_eq!(status, 401, "{body}");
    assert!(error_of(&body).contains("not `Bearer <token>`"), "{body}");
    let (status, body) = get(&functions, Some(&format!("Bearer {EVENT_KEY}"))).await;
    assert_eq!(status, 403, "{body}");
    assert!(error_of(&body).contains("event key"), "{body}");
    let bearer = format!("Bearer {TOKEN}");
    let (status, body) = get(&format!("{base}/api/runs/nope"), Some(&bearer)).await;
    assert_eq!(status, 400, "{body}");
    let missing = uuid::Uuid::now_v7();
    let (status, body) = get(&format!("{base}/api/runs/{missing}"), Some(&bearer)).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(&format!("{base}/api/nothing"), Some(&bearer)).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_says_whether_the_database_answers() {
    let (store, url) = pg_store().await;
    let base = serve(store.clone(), config()).await;
    let (status, body) = get(&format!("{base}/health"), None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = get(&format!("{base}/ready"), None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    // The database goes away: the process still answers, but is not ready.
    let name = url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&pg::server_url())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let (status, body) = get(&format!("{base}/ready"), None).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        error_of(&body).contains("the database does not answer"),
        "{body}"
    );
    let (status, _) = get(&format!("{base}/health"), None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_on_an_sqlite_file_too() {
    let store = sqlite_store().await;
    let base = serve(store, config()).await;
    let (status, body) = post(
        &format!("{base}/e/{EVENT_KEY}"),
        r#"{"name": "app/user.signed_up", "data": {"id": 9}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let run = body["runs"][0]["run"].as_str().unwrap().to_owned();
    let (status, view) = get(
        &format!("{base}/api/runs/{run}"),
        Some(&format!("Bearer {TOKEN}")),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "queued");
    let (status, _) = get(&format!("{base}/ready"), None).await;
    assert_eq!(status, 200);
}

async fn post_with(url: &str, token: &str, body: &str) -> (u16, Value) {
    let request = reqwest::Client::new()
        .post(url)
        .header("authorization", format!("Bearer {token}"))
        .body(body.to_owned());
    answer(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_listed_by_filter_and_page_and_cancelled() {
    let (store, _) = pg_store().await;
    store
        .register_functions(
            &[FunctionInfo::new("audit", "app/user.deleted")],
            Now::Database,
        )
        .await
        .unwrap();
    let base = serve(store.clone(), config()).await;
    let events: Vec<String> = (0..5)
        .map(|i| format!(r#"{{"name": "app/user.signed_up", "data": {{"id": {i}}}}}"#))
        .chain([r#"{"name": "app/user.deleted", "data": {"id": 1}}"#.to_owned()])
        .collect();
    let (status, sent) = post(
        &format!("{base}/e/{EVENT_KEY}"),
        &format!("[{}]", events.join(",")),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let bearer = format!("Bearer {TOKEN}");
    let list = |query: String| {
        let (base, bearer) = (base.clone(), bearer.clone());
        async move { get(&format!("{base}/api/runs{query}"), Some(&bearer)).await }
    };
    // Every run once, newest first, two at a time.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let (status, page) = list(format!("?limit=2{after}")).await;
        assert_eq!(status, 200, "{page}");
        for run in page["runs"].as_array().unwrap() {
            seen.push(run["id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    let mut newest_first = seen.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, newest_first);
    assert_eq!(seen.len(), 6);
    let (_, audits) = list("?function=audit".into()).await;
    assert_eq!(audits["runs"].as_array().unwrap().len(), 1);
    let audit = audits["runs"][0]["id"].as_str().unwrap().to_owned();
    let deleted_event = sent["ids"][5].as_str().unwrap();
    // The events, newest first, by name.
    let (status, listed) = get(
        &format!("{base}/api/events?name=app/user.deleted"),
        Some(&bearer),
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["events"].as_array().unwrap().len(), 1);
    assert_eq!(listed["events"][0]["id"], deleted_event);
    assert_eq!(listed["events"][0]["data"]["id"], 1);
    let (_, all) = get(&format!("{base}/api/events?limit=4"), Some(&bearer)).await;
    assert_eq!(all["events"].as_array().unwrap().len(), 4);
    let next = all["next"].as_str().unwrap();
    let (_, rest) = get(
        &format!("{base}/api/events?limit=4&after={next}"),
        Some(&bearer),
    )
    .await;
    assert_eq!(rest["events"].as_array().unwrap().len(), 2);
    assert!(rest["next"].is_null());
    let (status, body) = get(&format!("{base}/api/events?limit=500"), Some(&bearer)).await;
    assert_eq!(status, 400, "{body}");
    let (_, by_event) = list(format!("?event={deleted_event}")).await;
    assert_eq!(by_event["runs"][0]["id"], audit.as_str());
    // Cancelled with a reason, then listed as such; a second cancel conflicts.
    let cancel = format!("{base}/api/runs/{audit}/cancel");
    let (status, view) = post_with(&cancel, TOKEN, r#"{"reason": "user asked"}"#).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["status"], "cancelled");
    assert!(
        view["error"].as_str().unwrap().contains("user asked"),
        "{view}"
    );
    let (status, body) = post_with(&cancel, TOKEN, "").await;
    assert_eq!(status, 409, "{body}");
    assert!(error_of(&body).contains("already ended"), "{body}");
    // Run again: a new run of the same function and event.
    let rerun = format!("{base}/api/runs/{audit}/rerun");
    let (status, again) = post_with(&rerun, TOKEN, "").await;
    assert_eq!(status, 200, "{again}");
    let again = again["run"].as_str().unwrap().to_owned();
    let (_, view) = get(&format!("{base}/api/runs/{again}"), Some(&bearer)).await;
    assert_eq!(
        (view["function_id"].as_str(), view["status"].as_str()),
        (Some("audit"), Some("queued"))
    );
    assert_eq!(view["event_id"], deleted_event);
    let (status, body) = post_with(&format!("{base}/api/runs/{again}/rerun"), TOKEN, "").await;
    assert_eq!(status, 409, "{body}");
    assert!(error_of(&body).contains("has not ended"), "{body}");
    let (status, _) = post_with(&format!("{base}/api/runs/{again}/cancel"), TOKEN, "").await;
    assert_eq!(status, 200);
    // No worker announces the function any more: nothing would run it.
    sqlx::query("DELETE FROM flow.functions WHERE id = 'audit'")
        .execute(store.pool())
        .await
        .unwrap();
    let (status, body) = post_with(&format!("{base}/api/runs/{again}/rerun"), TOKEN, "").await;
    assert_eq!(status, 404, "{body}");
    assert!(error_of(&body).contains("function `audit`"), "{body}");
    let (_, cancelled) = list("?status=cancelled,failed".into()).await;
    assert_eq!(cancelled["runs"].as_array().unwrap().len(), 2);
    let (_, recent) = list("?from=2000-01-01T00:00:00Z&to=2999-01-01T00:00:00Z".into()).await;
    assert_eq!(recent["runs"].as_array().unwrap().len(), 7);
    // Filters that do not read are refused, naming the parameter.
    for (query, reason) in [
        ("?status=done", "`status` \"done\" is not a run status"),
        ("?limit=0", "`limit` is 1 to 200"),
        ("?limit=lots", "the query string"),
        ("?from=yesterday", "`from` \"yesterday\""),
        ("?event=nope", "is not an event id"),
        ("?colour=red", "unknown field `colour`"),
    ] {
        let (status, body) = list(query.into()).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(error_of(&body).contains(reason), "{query}: {body}");
    }
    let (status, body) = post_with(&cancel, TOKEN, r#"{"why": "x"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("unknown field `why`"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_no_run_waits_for_is_refused_unless_kept() {
    let (store, _) = pg_store().await;
    let base = serve(store, config()).await;
    let signal = format!("{base}/api/signals/approval%2Forder-7");
    let (status, body) = post_with(&signal, TOKEN, r#"{"approved": true}"#).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        error_of(&body).contains("no run waits for signal `approval/order-7`"),
        "{body}"
    );
    let (status, body) = post_with(
        &format!("{signal}?buffer=true"),
        TOKEN,
        r#"{"approved": true}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["buffered"], true);
    let (status, body) = post_with(&signal, TOKEN, "{not json").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = post_with(&signal, "tk_wrong", "{}").await;
    assert_eq!(status, 401);
}

/// An SQLite store on a file of its own, with `signup` announced.
async fn sqlite_store() -> flow_sqlite::SqliteStore {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("server-sqlite");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.db", uuid::Uuid::new_v4().simple()));
    let store = <flow_sqlite::SqliteStore as flow_core::Connect>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .unwrap();
    store
        .register_functions(
            &[FunctionInfo::new("signup", "app/user.signed_up")],
            Now::Database,
        )
        .await
        .unwrap();
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_development_server_asks_no_key_and_answers_this_machine_only() {
    let store = sqlite_store().await;
    let base = serve(store.clone(), ServerConfig::local_development()).await;
    let (status, body) = post(
        &format!("{base}/e/any-key"),
        r#"{"name": "app/user.signed_up", "data": {"id": 1}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(&format!("{base}/api/functions"), None).await;
    assert_eq!(status, 200, "{body}");
    // A peer of another machine is refused, whatever the server is bound to.
    use tower::ServiceExt;
    let router = flow_server::router(store.clone(), ServerConfig::local_development());
    let from = |peer: &str| {
        let mut request = axum::http::Request::get("/api/functions")
            .body(axum::body::Body::empty())
            .unwrap();
        let peer: std::net::SocketAddr = peer.parse().unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        request
    };
    let response = router
        .clone()
        .oneshot(from("192.0.2.7:50000"))
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&body)
            .contains("answers only the machine it runs on, not 192.0.2.7"),
        "{body:?}"
    );
    let response = router.clone().oneshot(from("[::1]:50000")).await.unwrap();
    assert_eq!(response.status(), 200);
    // Served without the peer's address, it answers no one.
    let blind = axum::http::Request::get("/api/functions")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = router.oneshot(blind).await.unwrap();
    assert_eq!(response.status(), 403);
    // A server with keys asks for them, from this machine too.
    let keyed = serve(store, config()).await;
    let (status, _) = get(&format!("{keyed}/api/functions"), None).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_of_a_function_are_cancelled_in_bulk_by_creation_time() {
    let (store, _) = pg_store().await;
    let base = serve(store, config()).await;
    let events: Vec<String> = (0..4)
        .map(|i| format!(r#"{{"name": "app/user.signed_up", "data": {{"id": {i}}}}}"#))
        .collect();
    let (status, sent) = post(
        &format!("{base}/e/{EVENT_KEY}"),
        &format!("[{}]", events.join(",")),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let bulk = format!("{base}/api/runs/cancel");
    let (status, body) = post_with(
        &bulk,
        TOKEN,
        r#"{"function": "signup", "from": "2000-01-01T00:00:00Z", "to": "2999-01-01T00:00:00Z",
            "reason": "a bad deploy"}"#,
    )
    .await;
    assert_eq!(
        (status, body["cancelled"].as_u64()),
        (200, Some(4)),
        "{body}"
    );
    let (_, page) = get(
        &format!("{base}/api/runs?status=cancelled"),
        Some(&format!("Bearer {TOKEN}")),
    )
    .await;
    assert_eq!(page["runs"].as_array().unwrap().len(), 4);
    assert!(
        page["runs"][0]["error"]
            .as_str()
            .unwrap()
            .contains("a bad deploy")
    );
    // Nothing left to cancel; and bodies that do not read are refused by name.
    let (status, body) = post_with(
        &bulk,
        TOKEN,
        r#"{"function": "signup", "from": "2000-01-01T00:00:00Z", "to": "2999-01-01T00:00:00Z"}"#,
    )
    .await;
    assert_eq!(
        (status, body["cancelled"].as_u64()),
        (200, Some(0)),
        "{body}"
    );
    for (bad, reason) in [
        (
            r#"{"function": "signup", "from": "2001-01-01T00:00:00Z", "to": "2000-01-01T00:00:00Z"}"#,
            "must be before",
        ),
        (
            r#"{"function": "signup", "to": "2000-01-01T00:00:00Z"}"#,
            "missing field `from`",
        ),
        (
            r#"{"function": "signup", "from": "now", "to": "2000-01-01T00:00:00Z"}"#,
            "`from` \"now\"",
        ),
    ] {
        let (status, body) = post_with(&bulk, TOKEN, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(error_of(&body).contains(reason), "{bad}: {body}");
    }
}
