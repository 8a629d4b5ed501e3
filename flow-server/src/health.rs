//! `/health` (the process answers) and `/ready` (its database answers).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use flow_core::{ReadStore, Store};

use crate::AppState;
use crate::error::ApiError;

pub(crate) async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Ready once the store answers a query (its schema is migrated when it is
/// opened, so an opened store's schema is current).
pub(crate) async fn ready<S: Store + ReadStore>(
    State(state): State<Arc<AppState<S>>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match state.client.store().database_time().await {
        Ok(now) => Ok(Json(
            serde_json::json!({ "status": "ready", "database_time": now }),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the database does not answer: {e}"),
        )),
    }
}
