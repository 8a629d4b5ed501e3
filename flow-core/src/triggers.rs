//! Functions with several triggers: `#[function(event = "a", event = "b", cron =
//! "...")]` takes a type that says which one started the run, an enum with one
//! variant per event type, made by `#[derive(Triggers)]`:
//!
//! ```ignore
//! #[derive(Triggers)]
//! enum AccountChange {
//!     Created(AccountCreated),  // an #[derive(Event)] type
//!     Deleted(AccountDeleted),
//!     Nightly(CronTick),        // the function's cron schedules' ticks
//! }
//! ```
//!
//! The macro checks at compile time that every trigger has a variant and every
//! variant a trigger.

use serde_json::Value;

use crate::store::Failure;

/// What a function with several triggers takes: the event that started the run,
/// as the variant of its type. Derived for enums by `#[derive(Triggers)]`.
#[diagnostic::on_unimplemented(
    message = "a function with several triggers takes an enum of their events, not `{Self}`",
    label = "write a `#[derive(Triggers)]` enum with a variant per trigger here",
    note = "for example `#[derive(Triggers)] enum Change {{ Created(AccountCreated), Nightly(CronTick) }}`"
)]
pub trait Triggers: Sized + Send + 'static {
    /// The event names it takes, one per variant (a cron tick's is `flow/cron`,
    /// which stands for the ticks of every function, `flow/cron.<id>`).
    const NAMES: &'static [&'static str];

    /// The event named `name`, with `data`, as the variant that takes it; a
    /// failure naming the type when no variant does or the data does not fit.
    fn decode(name: &str, data: Value) -> Result<Self, Failure>;
}

/// Whether the trigger `name` (an event name, or `flow/cron.<id>` for cron
/// ticks) is the event `declared` that a variant takes.
pub const fn takes(declared: &str, name: &str) -> bool {
    let (declared, name) = (declared.as_bytes(), name.as_bytes());
    let cron = crate::cron::CRON_TRIGGER_PREFIX.as_bytes();
    // `flow/cron` takes every `flow/cron.<id>`.
    if declared.len() + 1 == cron.len() && starts_with(cron, declared) && starts_with(name, cron) {
        return true;
    }
    declared.len() == name.len() && starts_with(name, declared)
}

const fn starts_with(text: &[u8], prefix: &[u8]) -> bool {
    if prefix.len() > text.len() {
        return false;
    }
    let mut i = 0;
    while i < prefix.len() {
        if text[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn str_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && starts_with(a.as_bytes(), b.as_bytes())
}

/// Whether some variant of `names` takes the trigger `name`.
pub const fn has_variant(names: &[&str], name: &str) -> bool {
    let mut i = 0;
    while i < names.len() {
        if takes(names[i], name) {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether every variant of `names` takes one of `triggers`.
pub const fn every_variant_fires(names: &[&str], triggers: &[&str]) -> bool {
    let mut i = 0;
    while i < names.len() {
        let mut fired = false;
        let mut j = 0;
        while j < triggers.len() {
            if takes(names[i], triggers[j]) {
                fired = true;
            }
            j += 1;
        }
        if !fired {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether no two of `names` are the same event.
pub const fn distinct_names(names: &[&str]) -> bool {
    let mut i = 0;
    while i < names.len() {
        let mut j = i + 1;
        while j < names.len() {
            if str_eq(names[i], names[j]) {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

/// The failure of an event that no variant of `type_name` takes (a run started
/// by a trigger the function no longer declares).
pub fn no_variant(name: &str, type_name: &str) -> Failure {
    Failure::new(
        crate::store::FailureKind::Event,
        format!("`{type_name}` has no variant for event `{name}`"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cron_variant_takes_the_ticks_of_every_cron_function() {
        assert!(takes("flow/cron", "flow/cron.report"));
        assert!(!takes("flow/cron", "flow/cronx"));
        assert!(!takes("flow/cron", "flow/function.failed"));
        assert!(takes("app/a", "app/a"));
        assert!(!takes("app/a", "app/ab"));
        assert!(!takes("app/ab", "app/a"));
        let names = ["app/a", "flow/cron"];
        assert!(has_variant(&names, "flow/cron.x"));
        assert!(!has_variant(&names, "app/b"));
        assert!(every_variant_fires(&names, &["app/a", "flow/cron.x"]));
        assert!(!every_variant_fires(&names, &["app/a"]));
        assert!(distinct_names(&names));
        assert!(!distinct_names(&["app/a", "app/a"]));
    }
}
