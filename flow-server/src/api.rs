//! `/api/...`: reads of runs and functions, behind a bearer token.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use flow_core::store::{EventPage, EventQuery, MAX_RUN_PAGE, RunPage, RunQuery, SignalReceipt};
use flow_core::{EventId, FunctionView, ReadStore, RunId, RunStatus, RunView, Store};

use crate::AppState;
use crate::error::ApiError;

/// Refuses a request without a token the server holds: `401` without one or with
/// an unknown one, `403` for an event key (it sends events, it reads nothing).
/// A development server takes every request (from this machine).
fn authorize<S>(state: &AppState<S>, headers: &HeaderMap) -> Result<(), ApiError> {
    // A development server answers this machine only, and asks no token.
    if state.config.open {
        return Ok(());
    }
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

/// `text` as the id of a `what` (a run, an event).
fn id_of(text: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(text)
        .map_err(|e| ApiError::bad_request(format!("`{text}` is not {what} id: {e}")))
}

pub(crate) async fn run<S: Store + ReadStore>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    authorize(&state, &headers)?;
    let id = id_of(&id, "a run")?;
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

/// The filters of `GET /api/runs`, as the query string gives them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunFilters {
    function: Option<String>,
    /// Statuses, comma-separated.
    status: Option<String>,
    /// Created at or after (RFC 3339).
    from: Option<String>,
    /// Created before (RFC 3339).
    to: Option<String>,
    event: Option<String>,
    /// The `next` of the page before.
    after: Option<String>,
    limit: Option<u32>,
}

/// The default size of a page of runs or events.
const RUN_PAGE: u32 = 50;

/// A page's `limit` parameter, [`RUN_PAGE`] when not given.
fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(RUN_PAGE);
    if limit == 0 || limit > MAX_RUN_PAGE {
        return Err(ApiError::bad_request(format!(
            "`limit` is 1 to {MAX_RUN_PAGE}, not {limit}"
        )));
    }
    Ok(limit)
}

fn time_of(text: &str, what: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            ApiError::bad_request(format!("`{what}` \"{text}\" is not an RFC 3339 time: {e}"))
        })
}

impl RunFilters {
    fn query(self) -> Result<RunQuery, ApiError> {
        let statuses = match &self.status {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|s| {
                    s.trim().parse::<RunStatus>().map_err(|_| {
                        ApiError::bad_request(format!(
                            "`status` \"{s}\" is not a run status (queued, running, sleeping, \
                             waiting, blocked, completed, failed, cancelled, skipped)"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let limit = page_limit(self.limit)?;
        Ok(RunQuery {
            function: self.function,
            statuses,
            created_from: self
                .from
                .as_deref()
                .map(|t| time_of(t, "from"))
                .transpose()?,
            created_to: self.to.as_deref().map(|t| time_of(t, "to")).transpose()?,
            event: self
                .event
                .as_deref()
                .map(|e| id_of(e, "an event").map(EventId))
                .transpose()?,
            after: self
                .after
                .as_deref()
                .map(|r| id_of(r, "a run").map(RunId))
                .transpose()?,
            limit,
        })
    }
}

/// `GET /api/runs?function=&status=failed,cancelled&from=&to=&event=&after=&limit=`:
/// newest first; `next` is the `after` of the following page.
pub(crate) async fn runs<S: Store + ReadStore>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    filters: Result<Query<RunFilters>, QueryRejection>,
) -> Result<Json<RunPage>, ApiError> {
    authorize(&state, &headers)?;
    let Query(filters) = filters
        .map_err(|e| ApiError::bad_request(format!("the query string: {}", e.body_text())))?;
    Ok(Json(state.client.runs(&filters.query()?).await?))
}

/// The JSON body of a request, or `{}` when it has none.
fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = body.map_err(|e| {
        ApiError::new(
            e.status(),
            format!("the body was not read: {}", e.body_text()),
        )
    })?;
    if body.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))
}

/// `POST /api/runs/{id}/cancel` with an optional `{"reason": "..."}`: the run as
/// it is after the cancel (`409` if it had already ended).
pub(crate) async fn cancel<S: Store + ReadStore>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RunView>, ApiError> {
    authorize(&state, &headers)?;
    let id = RunId(id_of(&id, "a run")?);
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cancel {
        reason: Option<String>,
    }
    let cancel: Cancel = serde_json::from_value(json_body(body)?)
        .map_err(|e| ApiError::bad_request(format!("the body: {e}")))?;
    let reason = cancel
        .reason
        .unwrap_or_else(|| "cancelled through the API".to_owned());
    Ok(Json(state.client.cancel(id, reason).await?))
}

/// Whether `POST /api/signals/{name}` keeps a signal no run waits for.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignalOptions {
    #[serde(default)]
    buffer: bool,
}

/// `POST /api/signals/{name}` with the payload as the body: delivered to the one
/// run waiting on the name (`404` when none does), or with `?buffer=true` kept
/// for the next run that waits on it.
pub(crate) async fn signal<S: Store + ReadStore>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    options: Result<Query<SignalOptions>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let Query(options) = options
        .map_err(|e| ApiError::bad_request(format!("the query string: {}", e.body_text())))?;
    let payload = json_body(body)?;
    let answer = match options.buffer {
        false => {
            let run = state.client.signal(&name, payload).await?;
            serde_json::json!({ "delivered": run })
        }
        true => match state.client.signal_or_buffer(&name, payload).await? {
            SignalReceipt::Delivered(run) => serde_json::json!({ "delivered": run }),
            // Buffered (and whatever a later flow adds): not delivered yet.
            _ => serde_json::json!({ "buffered": true }),
        },
    };
    Ok(Json(answer))
}

/// The filters of `GET /api/events`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventFilters {
    name: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/events?name=&after=&limit=`: newest first, with their data; the runs
/// an event started are `GET /api/runs?event={id}`.
pub(crate) async fn events<S: Store + ReadStore>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    filters: Result<Query<EventFilters>, QueryRejection>,
) -> Result<Json<EventPage>, ApiError> {
    authorize(&state, &headers)?;
    let Query(filters) = filters
        .map_err(|e| ApiError::bad_request(format!("the query string: {}", e.body_text())))?;
    let limit = page_limit(filters.limit)?;
    let query = EventQuery {
        name: filters.name,
        after: filters
            .after
            .as_deref()
            .map(|e| id_of(e, "an event").map(EventId))
            .transpose()?,
        limit,
    };
    Ok(Json(state.client.events(&query).await?))
}

/// `POST /api/runs/{id}/rerun`: a new run of the ended run's function with its
/// event (`409` while it has not ended, `404` when no worker announces its
/// function any more).
pub(crate) async fn rerun<S: Store + ReadStore>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let id = RunId(id_of(&id, "a run")?);
    let run = state.client.rerun(id).await?;
    Ok(Json(serde_json::json!({ "run": run })))
}

/// The body of `POST /api/runs/cancel`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkCancel {
    function: String,
    /// Runs created at or after (RFC 3339).
    from: String,
    /// Runs created before (RFC 3339).
    to: String,
    reason: Option<String>,
}

/// `POST /api/runs/cancel` with `{"function", "from", "to", "reason"}`: cancels
/// every run of the function created in the range that has not ended, in one
/// statement; answers how many.
pub(crate) async fn cancel_many<S: Store + ReadStore>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    let bulk: BulkCancel = serde_json::from_value(json_body(body)?)
        .map_err(|e| ApiError::bad_request(format!("the body: {e}")))?;
    let (from, to) = (time_of(&bulk.from, "from")?, time_of(&bulk.to, "to")?);
    if from >= to {
        return Err(ApiError::bad_request(format!(
            "`from` ({from}) must be before `to` ({to})"
        )));
    }
    let reason = bulk
        .reason
        .unwrap_or_else(|| "cancelled through the API".to_owned());
    let cancelled = state
        .client
        .cancel_runs(&bulk.function, from..to, reason)
        .await?;
    Ok(Json(serde_json::json!({ "cancelled": cancelled })))
}
