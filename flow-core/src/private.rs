//! What the macros' generated code calls. Not a public API: names may change in
//! any release.

pub use crate::catalog::{RateLimit, Singleton, SingletonMode};
pub use crate::cron::{Cron, IsCronTick};
pub use crate::flow_control::{Concurrency, ConcurrencyScope, Throttle};
pub use crate::function::{CancelOn, FunctionDef, Registration, Timeouts};
pub use crate::grouping::Grouping;
pub use crate::retry::{Backoff, BackoffOverride, StepOptions};
pub use crate::triggers::{
    Triggers, distinct_names, every_variant_fires, has_variant, no_variant, takes,
};
pub use crate::{Ctx, Event, EventFields, Field, StepError};
pub use inventory;
pub use serde_json::Value;
pub use std::time::Duration;

use crate::StepCall;
use crate::store::{Failure, FailureKind};

/// The `ctx` a step's body sees: steps cannot be started from it.
pub fn step_body_ctx(ctx: &Ctx) -> crate::StepCtx {
    crate::StepCtx::of(ctx)
}

/// Starts a step call: its key and position are taken now, at call time.
pub fn step_call(ctx: &Ctx, id: &'static str, options: StepOptions) -> StepCall {
    StepCall::new(&ctx.core, id, options)
}

/// What `#[function]`'s generated `with` returns: `function` run with `event`.
pub fn invocation<T>(
    function: &'static FunctionDef,
    event: impl serde::Serialize,
) -> crate::Invocation<T> {
    crate::Invocation::new(function, event)
}

/// Reads a run's event data into the handler's event type, naming the type and
/// the serde path of what does not fit.
/// `name` is `<E as Event>::NAME`, which the macro spans at the user's event type:
/// a type that is not an event is then one error there, not a second one here.
pub fn decode_event<E: serde::de::DeserializeOwned>(
    data: Value,
    name: &'static str,
) -> Result<E, Failure> {
    serde_path_to_error::deserialize::<_, E>(data).map_err(|e| {
        let path = e.path().to_string();
        Failure::new(
            FailureKind::Event,
            format!(
                "the data of event `{}` does not deserialize into `{}`: at `{}`: {}",
                name,
                std::any::type_name::<E>(),
                path,
                e.into_inner()
            ),
        )
    })
}

/// The name `#[derive(Event)]` gives a type whose `#[event(name)]` it refused (and
/// reported), so that `#[function]` does not report the same mistake again.
pub const INVALID_EVENT_NAME: &str = "\0flow: invalid event name";

/// Compile-time string equality, for the trigger-versus-event-name assertion.
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Total length of `parts`, for [`concat`].
pub const fn concat_len(parts: &[&str]) -> usize {
    let mut total = 0;
    let mut i = 0;
    while i < parts.len() {
        total += parts[i].len();
        i += 1;
    }
    total
}

/// Concatenates `parts` at compile time (a const panic takes one string).
pub const fn concat<const N: usize>(parts: &[&str]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut at = 0;
    let mut i = 0;
    while i < parts.len() {
        let bytes = parts[i].as_bytes();
        let mut j = 0;
        while j < bytes.len() {
            out[at] = bytes[j];
            at += 1;
            j += 1;
        }
        i += 1;
    }
    out
}

/// The concatenation as a `&str` (valid UTF-8, since every part was).
pub const fn as_str(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(_) => panic!("flow: the parts of a compile-time message were not UTF-8"),
    }
}

/// How an `on_failure` handler's result ends its run: as a handler's does. Generic
/// where the macro cannot name the handler's types (it has only a path to the fn).
pub fn failure_handler_outcome<T: crate::Storable, E: crate::HandlerFailure>(
    result: Result<T, E>,
) -> crate::HandlerOutcome {
    crate::HandlerOutcome::of(result.map_err(crate::HandlerFailure::into_flow_error))
}
