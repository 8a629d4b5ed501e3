//! `/api/...`: reads of runs and functions, behind a bearer token.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};

use flow_core::{FunctionView, ReadStore, RunId, RunView, Store};

use crate::AppState;
use crate::error::ApiError;

/// Refuses a request without a token the server holds: `401` without one or with
/// an unknown one, `403` for an event key (it sends events, it reads nothing).
fn authorize<S>(state: &AppState<S>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "the API needs a token: send `Authorization: Bearer <token>`",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header is not `Bearer <token>`")
        })?;
    if state.config.api_tokens.holds(token) {
        return Ok(());
    }
    if state.config.event_keys.holds(token) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this is an event key: it sends events to /e/{key}, and reads nothing; use an API token",
        ));
    }
    Err(ApiError::unauthorized("unknown API token"))
}

pub(crate) async fn run<S: Store + ReadStore>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    authorize(&state, &headers)?;
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|e| ApiError::bad_request(format!("`{id}` is not a run id: {e}")))?;
    match state.client.run(RunId(id)).await? {
        Some(view) => Ok(Json(view)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no run with id {id}"),
        )),
    }
}

pub(crate) async fn functions<S: Store + ReadStore>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
) -> Result<Json<Vec<FunctionView>>, ApiError> {
    authorize(&state, &headers)?;
    Ok(Json(state.client.functions().await?))
}
