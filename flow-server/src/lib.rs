//! The flow server: HTTP event ingest and the REST API over a flow store.
//!
//! ```no_run
//! # async fn demo(store: flow_postgres::PgStore) -> Result<(), Box<dyn std::error::Error>> {
//! use flow_server::{Keys, ServerConfig};
//! let config = ServerConfig::new(
//!     Keys::of(["an event key producers put in the URL"]),
//!     Keys::of(["a token the API takes as `Authorization: Bearer ...`"]),
//! );
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8288").await?;
//! flow_server::serve(listener, flow_server::router(store, config)).await?;
//! # Ok(()) }
//! ```
//!
//! Every route but `/health` and `/ready` takes a key: `POST /e/{event_key}` an
//! event key, `/api/...` a bearer token. Refusals are `401` (no key, or one the
//! server does not hold) or `403` (an event key used on the API), with a JSON body
//! `{"error": "..."}` that says which, and nothing is stored.

mod api;
mod error;
mod health;
mod ingest;
mod keys;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use flow_core::{Client, ReadStore, Store};

pub use error::ApiError;
pub use keys::Keys;

/// The largest request body the server reads, unless configured (`413` past it,
/// before the body is read whole): the largest send of events, with room for JSON.
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// What the server accepts.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The keys producers send events with (`POST /e/{event_key}`).
    pub event_keys: Keys,
    /// The tokens the API takes (`Authorization: Bearer <token>`).
    pub api_tokens: Keys,
    /// The largest request body, in bytes.
    pub body_limit: usize,
    /// A development server: no key is asked, and only this machine is answered
    /// ([`ServerConfig::local_development`]).
    pub open: bool,
}

impl ServerConfig {
    /// A server that takes events with `event_keys` and API calls with
    /// `api_tokens`, and bodies up to [`DEFAULT_BODY_LIMIT`].
    pub fn new(event_keys: Keys, api_tokens: Keys) -> Self {
        ServerConfig {
            event_keys,
            api_tokens,
            body_limit: DEFAULT_BODY_LIMIT,
            open: false,
        }
    }

    /// A development server: it asks no key, and answers requests from this
    /// machine only (a loopback peer); any other is refused with `403`, whatever
    /// address the server is bound to. It needs the peer's address, which
    /// [`serve`] passes on; a router served without it refuses every request.
    pub fn local_development() -> Self {
        ServerConfig {
            open: true,
            ..ServerConfig::new(Keys::none(), Keys::none())
        }
    }
}

/// What every handler shares.
pub(crate) struct AppState<S> {
    pub client: Client<S>,
    pub config: ServerConfig,
}

/// The routes of the server over `store`.
pub fn router<S: Store + ReadStore>(store: S, config: ServerConfig) -> Router {
    let limit = config.body_limit;
    let state = Arc::new(AppState {
        client: Client::new(store),
        config,
    });
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready::<S>))
        .route("/e/{event_key}", post(ingest::events::<S>))
        .route("/api/runs", get(api::runs::<S>))
        .route("/api/runs/cancel", post(api::cancel_many::<S>))
        .route("/api/runs/{id}", get(api::run::<S>))
        .route("/api/runs/{id}/cancel", post(api::cancel::<S>))
        .route("/api/runs/{id}/rerun", post(api::rerun::<S>))
        .route("/api/signals/{name}", post(api::signal::<S>))
        .route("/api/events", get(api::events::<S>))
        .route("/api/functions", get(api::functions::<S>))
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            keys::local_only::<S>,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves `router` on `listener` until the process ends, telling each request its
/// peer's address.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await
}
