//! flow's own events, sent by the store in the statement that ends a run: a
//! function whose trigger is one of them runs once per run that ends.
//!
//! `flow/function.finished` follows every end (completed, failed or cancelled),
//! `flow/function.failed` a failure and `flow/function.cancelled` a cancel. They are
//! stored only while some function is announced with their name as its trigger (one
//! index probe per ended run otherwise), and a run started by one of them sends none,
//! so a function triggered by `flow/function.finished` does not trigger itself.
//! Names beginning with `flow/` are flow's: a send of one is refused.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::Failure;
use crate::{Event, EventId, RunId, RunStatus};

/// The prefix of flow's own event names, which no application may send.
pub const RESERVED_PREFIX: &str = "flow/";

/// Sent when a run ends, however it ends.
pub const FUNCTION_FINISHED: &str = "flow/function.finished";
/// Sent when a run fails for good.
pub const FUNCTION_FAILED: &str = "flow/function.failed";
/// Sent when a run is cancelled.
pub const FUNCTION_CANCELLED: &str = "flow/function.cancelled";
/// The name of the event of a run started by `ctx.invoke` (its data is the
/// invoke's payload). It triggers no function and resolves no wait: the run it
/// belongs to is created with it, for one function.
pub const FUNCTION_INVOKED: &str = "flow/function.invoked";

/// The event that started the run a system event is about; `E` is its data's type
/// (JSON by default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TriggerEvent<E = Value> {
    /// Its id.
    pub id: EventId,
    /// Its name.
    pub name: String,
    /// Its data.
    pub data: E,
    /// When it happened.
    pub ts: DateTime<Utc>,
}

/// `flow/function.finished`: a run ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionFinished<E = Value> {
    /// The function the run belonged to.
    pub function_id: String,
    /// The run.
    pub run_id: RunId,
    /// How it ended: completed, failed or cancelled.
    pub status: RunStatus,
    /// The event that started it.
    pub event: TriggerEvent<E>,
    /// The handler's output, when it completed.
    pub output: Option<Value>,
    /// Why it failed, when it failed.
    pub error: Option<Failure>,
    /// Why it was cancelled, when it was.
    pub reason: Option<String>,
}

/// `flow/function.failed`: a run failed for good.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionFailed<E = Value> {
    /// The function the run belonged to.
    pub function_id: String,
    /// The run.
    pub run_id: RunId,
    /// The event that started it.
    pub event: TriggerEvent<E>,
    /// Why it failed.
    pub error: Failure,
}

/// `flow/function.cancelled`: a run was cancelled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionCancelled<E = Value> {
    /// The function the run belonged to.
    pub function_id: String,
    /// The run.
    pub run_id: RunId,
    /// The event that started it.
    pub event: TriggerEvent<E>,
    /// Why it was cancelled.
    pub reason: String,
}

// `do_not_recommend`: rustc would list these impls in the error of a user's type
// that lacks `Event`.
#[diagnostic::do_not_recommend]
impl<E: Serialize + DeserializeOwned + Send + 'static> Event for FunctionFinished<E> {
    const NAME: &'static str = FUNCTION_FINISHED;
}

#[diagnostic::do_not_recommend]
impl<E: Serialize + DeserializeOwned + Send + 'static> Event for FunctionFailed<E> {
    const NAME: &'static str = FUNCTION_FAILED;
}

#[diagnostic::do_not_recommend]
impl<E: Serialize + DeserializeOwned + Send + 'static> Event for FunctionCancelled<E> {
    const NAME: &'static str = FUNCTION_CANCELLED;
}

/// Why an application may not send an event of this name, if it may not.
pub fn check_not_reserved(name: &str) -> Result<(), String> {
    if name.starts_with(RESERVED_PREFIX) {
        return Err(format!(
            "event name `{name}` begins with `{RESERVED_PREFIX}`, which is reserved for the \
             events flow sends itself when runs end; give it your application's prefix, \
             such as `app/`"
        ));
    }
    Ok(())
}
