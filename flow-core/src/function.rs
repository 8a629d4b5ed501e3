//! Functions: what `#[function]` declares, and the registry a worker serves.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value;

use crate::{Backoff, Ctx, Error};

/// How a handler's run ended, as the driver stores it.
#[derive(Debug)]
pub enum HandlerOutcome {
    /// The handler returned `Ok`; its output as JSON.
    Completed(Value),
    /// The run fails at once: a step's final error was propagated, the error is
    /// fatal, or the event did not deserialize.
    Failed(crate::store::Failure),
    /// An error of the handler's own code: the body is tried again with the
    /// function's retry policy (it replays from its checkpoints).
    Retry(crate::store::Failure),
}

impl HandlerOutcome {
    /// A handler's result as the driver stores it: its output as JSON, or how its
    /// error ends the run (a propagated step error and a fatal one fail it; any
    /// other is tried again).
    pub fn of<T: crate::Storable>(result: Result<T, crate::FlowError>) -> HandlerOutcome {
        use crate::store::{Failure, FailureKind};
        match result {
            Ok(output) => match serde_json::to_value(output) {
                Ok(value) => HandlerOutcome::Completed(value),
                Err(e) => HandlerOutcome::Failed(Failure::new(
                    FailureKind::Handler,
                    format!("the handler's output does not serialize: {e}"),
                )),
            },
            Err(error) => match error.step() {
                Some(step) => HandlerOutcome::Failed(
                    Failure::new(FailureKind::Step, error.message()).in_step(step),
                ),
                None if error.is_fatal() => {
                    HandlerOutcome::Failed(Failure::new(FailureKind::Handler, error.message()))
                }
                None => HandlerOutcome::Retry(Failure::new(FailureKind::Handler, error.message())),
            },
        }
    }
}

/// The type-erased entry point the macro generates for a handler: the run's
/// context, the name of the event that started it (which of several triggers),
/// and the event's data.
pub type HandlerFn = fn(Ctx, String, Value) -> Pin<Box<dyn Future<Output = HandlerOutcome> + Send>>;

/// The most triggers (events and cron schedules) one function may have.
pub const MAX_TRIGGERS: usize = 10;

/// Everything the engine knows about one `#[function]`.
#[derive(Debug)]
pub struct FunctionDef {
    /// The function's id (its fn name unless `id = "..."` was given). Runs store it.
    pub id: &'static str,
    /// The event name that triggers it (`flow/cron.<id>` for a cron function):
    /// its first trigger, as declared.
    pub trigger: &'static str,
    /// The names of its other triggers, for a function with several (`event`
    /// given more than once, or beside `cron`); its handler then takes a
    /// [`Triggers`](crate::Triggers) type.
    pub more_triggers: &'static [&'static str],
    /// `cron = "..."` (with `timezone`): the schedules whose ticks start its runs
    /// (all sent as `flow/cron.<id>`).
    pub crons: &'static [crate::cron::Cron],
    /// Retries its steps get unless they say otherwise.
    pub retries: u32,
    /// Backoff its steps use unless they say otherwise.
    pub backoff: Backoff,
    /// Runs the handler.
    pub handler: HandlerFn,
    /// `file:line` of the definition, for error messages.
    pub location: &'static str,
    /// Its `on_failure` handler: a function of its own (id `<id>.on_failure`,
    /// triggered by `flow/function.failed` for this function's runs only), served
    /// wherever this one is.
    pub on_failure: Option<&'static FunctionDef>,
    /// For an `on_failure` handler: the function whose failures start it.
    pub failures_of: Option<&'static str>,
    /// `cancel_on(...)`: events that cancel a run of it.
    pub cancel_on: &'static [CancelOn],
    /// `timeouts(start = "...", finish = "...")`: how long a run may wait to
    /// start, and then to finish, before it is cancelled.
    pub timeouts: Timeouts,
    /// `concurrency(...)`: how many of its runs may execute at once, per key.
    pub concurrency: &'static [crate::flow_control::Concurrency],
    /// `run_concurrency(...)`: how many of its runs may be active at once (started
    /// and not ended, sleeping and waiting ones included), per key.
    pub run_concurrency: &'static [crate::flow_control::Concurrency],
    /// `throttle(...)`: how many of its runs may start per period, per key.
    pub throttle: &'static [crate::flow_control::Throttle],
    /// `idempotency = "<CEL>"`: one run per value of this key per 24 hours,
    /// decided when the event is sent.
    pub idempotency: Option<&'static str>,
    /// `priority = "<CEL>"`: seconds by which a run jumps the backlog (negative:
    /// waits), decided when the event is sent.
    pub priority: Option<&'static str>,
    /// `singleton(key = "<CEL>", mode = skip | cancel)`: one active run per key,
    /// decided when the event is sent.
    pub singleton: Option<crate::catalog::Singleton>,
    /// `if = "<CEL>"`: only events for which this is true start a run, decided
    /// when the event is sent.
    pub filter: Option<&'static str>,
    /// `rate_limit(limit, period, key = "<CEL>")`: events over the limit start
    /// no run (it is recorded as skipped), decided when the event is sent.
    pub rate_limit: Option<crate::catalog::RateLimit>,
    /// `batch_events(...)` or `debounce(...)`: its events are gathered into
    /// runs, decided when they are sent ([`crate::grouping`]).
    pub grouping: Option<crate::grouping::Grouping>,
}

impl FunctionDef {
    /// Every event name that starts its runs: its trigger, then the others.
    pub fn triggers(&self) -> Vec<&'static str> {
        std::iter::once(self.trigger)
            .chain(self.more_triggers.iter().copied())
            .collect()
    }

    /// The name its cron ticks are sent as: `flow/cron.<id>`.
    pub fn cron_trigger(&self) -> String {
        format!("{}{}", crate::cron::CRON_TRIGGER_PREFIX, self.id)
    }
}

/// `#[function(timeouts(start = "10m", finish = "1h"))]`: a run that has not
/// started (been claimed by a worker) within `start` of its creation, or has not
/// finished within `finish` of its start, is cancelled with a reason that says
/// which. Either may be left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// From the run's creation to its start.
    pub start: Option<Duration>,
    /// From the run's start to its end.
    pub finish: Option<Duration>,
}

impl Timeouts {
    /// No timeouts.
    pub const NONE: Timeouts = Timeouts {
        start: None,
        finish: None,
    };

    /// The reason a run cancelled by a timeout ends with: the start timeout when it
    /// had not started, else the finish timeout; `within` is that timeout.
    pub fn reason(started: bool, within: Duration) -> String {
        let within = duration_text(within);
        if started {
            format!("did not finish within {within} of its start (timeouts: finish)")
        } else {
            format!("did not start within {within} of its creation (timeouts: start)")
        }
    }
}

/// A duration as `#[function]` takes them: `90s`, `10m`, `2h`, `1d`, `250ms`
/// (the largest unit that divides it).
pub(crate) fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// `#[function(cancel_on(event = "...", match = field))]`: an event named `event`
/// whose data carries, in `field`, the value the run's own event has there cancels
/// the run, whatever it is doing (sleeping, waiting, between steps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelOn {
    /// The name of the event that cancels.
    pub event: &'static str,
    /// The field, as named in both events' JSON data, whose values must be equal.
    pub field: &'static str,
}

/// The most `cancel_on` triggers one function may have.
pub const MAX_CANCEL_ON: usize = 5;

/// Implemented by `#[function]` on a type of the same name as the handler fn, so
/// the function can be named in type position: `builder.register::<my_fn>()`.
///
/// It names no types of the handler's: an associated `type Event = E` would make a
/// `pub` handler taking a private event type an error (E0446, a private type in a
/// public interface) where plain Rust accepts the fn. What needs the types (typed
/// invoke) takes them as generic parameters of a trait, which do not have that rule.
pub trait Function {
    /// Its definition.
    const DEF: &'static FunctionDef;
}

/// What `#[function]` submits to `inventory`, so that every function in the binary
/// registers itself.
pub struct Registration(pub &'static FunctionDef);

inventory::collect!(Registration);

/// Every function linked into this binary.
pub fn registered() -> Vec<&'static FunctionDef> {
    inventory::iter::<Registration>
        .into_iter()
        .map(|r| r.0)
        .collect()
}

/// The functions one worker serves, by id.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    by_id: BTreeMap<&'static str, &'static FunctionDef>,
    /// The concurrency rules of the functions that have any, compiled once.
    limited: std::sync::Arc<crate::flow_control::Limited>,
}

impl Registry {
    /// A registry of `defs`; two definitions with one id are an error naming both.
    pub fn new(defs: impl IntoIterator<Item = &'static FunctionDef>) -> Result<Self, Error> {
        let mut by_id: BTreeMap<&'static str, &'static FunctionDef> = BTreeMap::new();
        // A function's `on_failure` handler is served wherever it is.
        let defs = defs
            .into_iter()
            .flat_map(|def| std::iter::once(def).chain(def.on_failure));
        for def in defs {
            check_settings(def)?;
            if let Some(previous) = by_id.get(def.id) {
                if std::ptr::eq(*previous, def) {
                    continue;
                }
                return Err(Error::DuplicateFunction(format!(
                    "two functions have the id `{}`: one defined at {}, one at {}; \
                     give one of them another id with #[function(id = \"...\")]",
                    def.id, previous.location, def.location
                )));
            }
            by_id.insert(def.id, def);
        }
        let limited =
            crate::flow_control::Limited::of(by_id.values().copied()).map_err(Error::Config)?;
        Ok(Registry {
            by_id,
            limited: std::sync::Arc::new(limited),
        })
    }

    /// The concurrency rules of the functions that have any.
    pub fn limited(&self) -> &crate::flow_control::Limited {
        &self.limited
    }

    /// The ids of the functions without concurrency rules, which the claim takes
    /// without counting.
    pub fn unlimited_ids(&self) -> Vec<String> {
        self.by_id
            .keys()
            .filter(|id| !self.limited.is_limited(id))
            .map(|id| id.to_string())
            .collect()
    }

    /// The function with this id.
    pub fn get(&self, id: &str) -> Option<&'static FunctionDef> {
        self.by_id.get(id).copied()
    }

    /// Every function, by id.
    pub fn iter(&self) -> impl Iterator<Item = &'static FunctionDef> + '_ {
        self.by_id.values().copied()
    }

    /// The ids, for the claim query.
    pub fn ids(&self) -> Vec<String> {
        self.by_id.keys().map(|id| id.to_string()).collect()
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// What `#[function]` checks at compile time, checked again for a definition
/// written by hand: the stores would otherwise meet values they cannot hold.
fn check_settings(def: &FunctionDef) -> Result<(), Error> {
    let refuse = |problem: String| {
        Err(Error::Config(format!(
            "function `{}` (defined at {}): {problem}",
            def.id, def.location
        )))
    };
    if def.cancel_on.len() > MAX_CANCEL_ON {
        return refuse(format!(
            "it has {} `cancel_on`; the limit is {MAX_CANCEL_ON}",
            def.cancel_on.len()
        ));
    }
    for cancel in def.cancel_on {
        if let Err(problem) = crate::check_name(cancel.event) {
            return refuse(format!("its `cancel_on` event: {problem}"));
        }
        if cancel.field.is_empty() {
            return refuse(format!(
                "its `cancel_on` of `{}` names no field",
                cancel.event
            ));
        }
    }
    for (what, rules) in [
        ("concurrency", def.concurrency),
        ("run_concurrency", def.run_concurrency),
    ] {
        if rules.len() > crate::flow_control::MAX_CONCURRENCY_RULES {
            return refuse(format!(
                "it has {} `{what}` rules; the limit is {}",
                rules.len(),
                crate::flow_control::MAX_CONCURRENCY_RULES
            ));
        }
        for rule in rules {
            if rule.limit == 0 || rule.limit > crate::flow_control::MAX_CONCURRENCY_LIMIT {
                return refuse(format!(
                    "its `{what}` limit is {}; it must be 1 to {}",
                    rule.limit,
                    crate::flow_control::MAX_CONCURRENCY_LIMIT
                ));
            }
            if let crate::flow_control::ConcurrencyScope::Shared(name) = rule.scope
                && let Err(problem) = crate::flow_control::check_scope_name(name)
            {
                return refuse(format!("its `{what}` scope: {problem}"));
            }
        }
    }
    for cron in def.crons {
        if let Err(problem) = crate::cron::Schedule::parse(cron.schedule, cron.timezone) {
            return refuse(format!("its `cron`: {problem}"));
        }
        if cron.catch_up > crate::cron::MAX_CATCH_UP {
            return refuse(format!(
                "its `catch_up` is {}; the most is {}",
                cron.catch_up,
                crate::cron::MAX_CATCH_UP
            ));
        }
    }
    let triggers = def.triggers();
    if triggers.len() > MAX_TRIGGERS {
        return refuse(format!(
            "it has {} triggers; the most is {MAX_TRIGGERS}",
            triggers.len()
        ));
    }
    let cron_trigger = def.cron_trigger();
    for (i, trigger) in triggers.iter().enumerate() {
        if triggers[..i].contains(trigger) {
            return refuse(format!("its trigger `{trigger}` is given twice"));
        }
        if trigger.starts_with(crate::cron::CRON_TRIGGER_PREFIX) && *trigger != cron_trigger {
            return refuse(format!(
                "a cron function's ticks are named `{cron_trigger}`, not `{trigger}`"
            ));
        }
    }
    if !def.crons.is_empty() && !triggers.contains(&cron_trigger.as_str()) {
        return refuse(format!(
            "it has a `cron` schedule, so `{cron_trigger}` is among its triggers"
        ));
    }
    if let Some(rate) = def.rate_limit {
        if rate.limit == 0 || rate.limit > crate::catalog::MAX_RATE_LIMIT {
            return refuse(format!(
                "its `rate_limit` limit is {}; it must be 1 to {}",
                rate.limit,
                crate::catalog::MAX_RATE_LIMIT
            ));
        }
        if rate.period < Duration::from_secs(1) || rate.period > crate::catalog::MAX_RATE_PERIOD {
            return refuse("its `rate_limit` period must be 1 second to 366 days".to_owned());
        }
    }
    if let Some(grouping) = def.grouping {
        if !def.crons.is_empty() || !def.more_triggers.is_empty() {
            return refuse("only a function with one event trigger groups its events".to_owned());
        }
        if let Err(problem) = grouping.rule().check() {
            return refuse(format!("its {problem}"));
        }
    }
    for (which, timeout) in [
        ("start", def.timeouts.start),
        ("finish", def.timeouts.finish),
    ] {
        match timeout {
            Some(d) if d.is_zero() => return refuse(format!("its `{which}` timeout is zero")),
            Some(d) if d > crate::MAX_WAIT => {
                return refuse(format!(
                    "its `{which}` timeout is over the limit of 366 days"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn never(_: Ctx, _: String, _: Value) -> Pin<Box<dyn Future<Output = HandlerOutcome> + Send>> {
        Box::pin(async {
            HandlerOutcome::Failed(crate::Failure::new(crate::FailureKind::Handler, "unused"))
        })
    }

    pub(crate) static A: FunctionDef = FunctionDef {
        id: "same",
        trigger: "t/a",
        more_triggers: &[],
        crons: &[],
        retries: 4,
        backoff: Backoff::DEFAULT,
        handler: never,
        location: "src/a.rs:3",
        on_failure: None,
        failures_of: None,
        cancel_on: &[],
        timeouts: Timeouts::NONE,
        concurrency: &[],
        run_concurrency: &[],
        throttle: &[],
        idempotency: None,
        priority: None,
        singleton: None,
        filter: None,
        rate_limit: None,
        grouping: None,
    };
    static B: FunctionDef = FunctionDef {
        id: "same",
        trigger: "t/b",
        more_triggers: &[],
        crons: &[],
        retries: 4,
        backoff: Backoff::DEFAULT,
        handler: never,
        location: "src/b.rs:9",
        on_failure: None,
        failures_of: None,
        cancel_on: &[],
        timeouts: Timeouts::NONE,
        concurrency: &[],
        run_concurrency: &[],
        throttle: &[],
        idempotency: None,
        priority: None,
        singleton: None,
        filter: None,
        rate_limit: None,
        grouping: None,
    };

    #[test]
    fn timeout_reasons_name_the_timeout_in_the_units_it_was_written_in() {
        assert_eq!(
            Timeouts::reason(false, Duration::from_secs(600)),
            "did not start within 10m of its creation (timeouts: start)"
        );
        assert_eq!(
            Timeouts::reason(true, Duration::from_secs(86_400 * 2)),
            "did not finish within 2d of its start (timeouts: finish)"
        );
        assert_eq!(duration_text(Duration::from_millis(1_500)), "1500ms");
        assert_eq!(duration_text(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn settings_written_by_hand_are_checked_as_the_macro_checks_them() {
        static LONG: FunctionDef = FunctionDef {
            id: "long",
            timeouts: Timeouts {
                start: None,
                finish: Some(Duration::from_secs(400 * 86_400)),
            },
            ..A
        };
        static NAMELESS: FunctionDef = FunctionDef {
            id: "nameless",
            cancel_on: &[CancelOn {
                event: "",
                field: "user_id",
            }],
            ..A
        };
        let err = Registry::new([&LONG]).unwrap_err().to_string();
        assert!(
            err.contains("`long`") && err.contains("`finish` timeout is over the limit"),
            "{err}"
        );
        let err = Registry::new([&NAMELESS]).unwrap_err().to_string();
        assert!(
            err.contains("`nameless`") && err.contains("cannot be empty"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_ids_name_both_definitions() {
        let err = Registry::new([&A, &B]).unwrap_err().to_string();
        assert!(
            err.contains("src/a.rs:3") && err.contains("src/b.rs:9"),
            "{err}"
        );
        assert!(err.contains("#[function(id"), "{err}");
        // The same definition listed twice (explicitly and through inventory) is fine.
        assert_eq!(
            Registry::new([&A, &A]).unwrap().ids(),
            vec!["same".to_string()]
        );
    }
}
