//! `POST /e/{event_key}`: one event or an array of them, stored (with the runs they
//! start) before the answer, so a `200` means they are durable.
//!
//! An event is `{"name": "app/user.created", "data": {...}, "id": "...", "ts": ...}`:
//! `data` defaults to `{}`, `id` is the producer's id (a second event with it in 24
//! hours is a duplicate, stored once), `ts` when it happened (RFC 3339, or
//! milliseconds since the Unix epoch; a time in the future delays its runs).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use flow_core::{NewEvent, ReadStore, Store};

use crate::AppState;
use crate::error::ApiError;

/// One event of a request body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Incoming {
    name: String,
    #[serde(default = "empty_object")]
    data: Value,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    ts: Option<Timestamp>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Timestamp {
    Millis(i64),
    Text(String),
}

impl Timestamp {
    fn at(&self) -> Result<DateTime<Utc>, String> {
        match self {
            Timestamp::Millis(ms) => DateTime::from_timestamp_millis(*ms)
                .ok_or_else(|| format!("`ts` {ms} is not a time in milliseconds since 1970")),
            Timestamp::Text(text) => DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("`ts` \"{text}\" is not an RFC 3339 time: {e}")),
        }
    }
}

/// The events of a body, each checked; an error names the event (by its place in
/// an array) and what is wrong with it.
fn events_of(body: &[u8]) -> Result<Vec<NewEvent>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let (items, one) = match value {
        Value::Array(items) => (items, false),
        object @ Value::Object(_) => (vec![object], true),
        other => {
            return Err(ApiError::bad_request(format!(
                "the body is {}, not an event (an object) or an array of events",
                kind(&other)
            )));
        }
    };
    if items.is_empty() {
        return Err(ApiError::bad_request(
            "the body is an empty array: send at least one event",
        ));
    }
    let place = |i: usize| match one {
        true => "the event".to_owned(),
        false => format!("event {i}"),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let incoming: Incoming = serde_json::from_value(item)
                .map_err(|e| ApiError::bad_request(format!("{}: {e}", place(i))))?;
            let mut event = NewEvent::raw(incoming.name, incoming.data)
                .map_err(|e| ApiError::bad_request(format!("{}: {e}", place(i))))?;
            if let Some(id) = incoming.id {
                event = event.id(id);
            }
            if let Some(ts) = incoming.ts {
                event = event.ts(ts
                    .at()
                    .map_err(|e| ApiError::bad_request(format!("{}: {e}", place(i))))?);
            }
            Ok(event)
        })
        .collect()
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) async fn events<S: Store + ReadStore>(
    State(state): State<Arc<AppState<S>>>,
    Path(event_key): Path<String>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    // The key first: the body of a request without one is never read. A
    // development server (this machine only) takes any key.
    if !state.config.open && !state.config.event_keys.holds(&event_key) {
        return Err(ApiError::unauthorized(
            "unknown event key: send events to /e/{key} with a key this server holds",
        ));
    }
    // Over the limit, the body is refused before it is read whole.
    let limit = state.config.body_limit;
    let body = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|e| {
            let over = std::error::Error::source(&e)
                .is_some_and(|cause| cause.is::<http_body_util::LengthLimitError>());
            match over {
                true => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is over the {limit} bytes the server takes"),
                ),
                false => ApiError::bad_request(format!("the body was not read whole: {e}")),
            }
        })?;
    let events = events_of(&body)?;
    let receipt = state.client.send_batch(events).await?;
    let runs: Vec<Value> = receipt
        .runs
        .iter()
        .map(|(event, run)| serde_json::json!({ "event": event, "run": run }))
        .collect();
    let skipped: Vec<Value> = receipt
        .skipped
        .iter()
        .map(|s| {
            serde_json::json!({
                "event": s.event,
                "function": s.function,
                "reason": s.reason.to_string(),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "ids": receipt.event_ids,
        "runs": runs,
        "duplicates": receipt.duplicates,
        "skipped": skipped,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(body: &str) -> String {
        format!("{:?}", events_of(body.as_bytes()).unwrap_err())
    }

    #[test]
    fn bodies_that_are_not_events_are_refused_naming_what_is_wrong() {
        assert!(problem("{\"name\": \"app/a\"").contains("not JSON"));
        assert!(problem("42").contains("a number, not an event"));
        assert!(problem("[]").contains("empty array"));
        assert!(problem("{\"nme\": \"app/a\"}").contains("unknown field `nme`"));
        assert!(problem("[{\"name\": \"app/a\"}, {\"name\": 7}]").contains("event 1:"));
        assert!(problem("{\"name\": \"app/a\", \"ts\": \"yesterday\"}").contains("RFC 3339"));
        let events = events_of(
            br#"[{"name": "app/a"}, {"name": "app/b", "data": {"x": 1}, "id": "p-1", "ts": 1767225600000}]"#,
        )
        .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].data(), &serde_json::json!({}));
        assert_eq!(events[1].producer_id(), Some("p-1"));
        assert_eq!(
            events[1].timestamp(),
            Some("2026-01-01T00:00:00Z".parse().unwrap())
        );
    }
}
