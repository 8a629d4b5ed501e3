//! The function catalog: what a sender must know of the functions an event
//! triggers to decide, when the event is sent, whether and when each starts a run
//! (`if`, `idempotency`, `priority`, `singleton`, `rate_limit`).
//!
//! Workers announce each function's send-time rules with a hash of them. A
//! sender keeps the rules it compiled last ([`CatalogCache`]); its send statement
//! compares the hashes it decided with against the announced ones, and where one
//! differs (a function gained, changed or lost its rules) it stores nothing, and
//! the sender reloads the catalog and sends again. So a decision is never taken
//! against rules no worker announces any more, and a send of events that no rule
//! concerns costs no extra query.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::expr::Expr;
use crate::{EventId, FunctionDef, NewEvent, StoredEvent};

/// How often a worker marks the versions of the functions it serves as seen.
pub const VERSION_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a version counts as served after a worker last marked it seen (four
/// heartbeats): the catalog follows the version first seen last among those.
pub const VERSION_LIVENESS: std::time::Duration = std::time::Duration::from_secs(120);

/// How long an idempotency key holds: a second event with the key within this
/// window of the first starts no run.
pub const IDEMPOTENCY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// A function's rules that apply when an event is sent, as workers announce them
/// (JSON in the catalog).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRules {
    /// `idempotency = "<CEL>"`: one run per value of this key per 24 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<String>,
    /// `priority = "<CEL>"`: seconds by which a run jumps the backlog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// `singleton(key = "<CEL>", mode = skip | cancel)`: one active run per key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub singleton: Option<SingletonRule>,
    /// `if = "<CEL>"`: only events for which this is true start a run.
    #[serde(rename = "if", default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// `rate_limit(limit, period, key)`: events over the limit start no run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitRule>,
    /// `batch_events(...)` or `debounce(...)`: the group an event joins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<crate::grouping::GroupRule>,
}

/// `rate_limit(...)` as announced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRule {
    /// Runs per period.
    pub limit: u32,
    /// The period, in milliseconds.
    pub period_ms: u64,
    /// A CEL expression whose value is the key; one key for the whole function
    /// without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `#[function(rate_limit(limit = 1, period = "4h", key = "<CEL>"))]`: at most
/// `limit` runs start per `period` per key (GCRA: `limit` at once after a quiet
/// period, then one per `period / limit`); an event over it starts no run, and
/// the run it would have started is recorded as skipped, with the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Runs per period.
    pub limit: u32,
    /// The period.
    pub period: std::time::Duration,
    /// A CEL expression whose value is the key; one key for the whole function
    /// without it.
    pub key: Option<&'static str>,
}

/// The most a rate limit's `limit` may be.
pub const MAX_RATE_LIMIT: u32 = 100_000;

/// The longest a rate limit's `period` may be (as for throttles and waits).
pub const MAX_RATE_PERIOD: std::time::Duration = crate::MAX_WAIT;

/// A rate-limit key decided at send: what the store admits by (GCRA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateKey {
    /// The key's value (`""` for a function without one).
    pub key: String,
    /// Runs per period.
    pub limit: u32,
    /// The period.
    pub period: std::time::Duration,
}

impl RateKey {
    /// One start per interval...
    pub fn interval(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.period).unwrap_or(chrono::TimeDelta::MAX)
            / i32::try_from(self.limit.max(1)).unwrap_or(i32::MAX)
    }

    /// ...and `limit` at once: the key's arrival time may run this far ahead.
    pub fn tolerance(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.period).unwrap_or(chrono::TimeDelta::MAX) - self.interval()
    }

    /// Whether a start is allowed at `now` with the key's theoretical arrival
    /// time `tat`: the time it moves to when it is.
    pub fn admit(&self, tat: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let base = tat.unwrap_or(now).max(now);
        (base - now <= self.tolerance()).then(|| base + self.interval())
    }

    /// The error a skipped run is recorded with.
    pub fn reason(&self, function: &str) -> String {
        format!(
            "skipped: function `{function}` allows {} run{} per {} for rate-limit key `{}`, \
             and this event came over it (rate_limit)",
            self.limit,
            if self.limit == 1 { "" } else { "s" },
            crate::function::duration_text(self.period),
            self.key
        )
    }
}

/// `singleton(...)` as announced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingletonRule {
    /// A CEL expression whose value is the key; one key for the whole function
    /// without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What a new event does while a run of its key is active.
    pub mode: SingletonMode,
}

/// `#[function(singleton(key = "<CEL>", mode = skip | cancel))]`: at most one
/// active run (any status but ended) per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Singleton {
    /// A CEL expression whose value is the key; one key for the whole function
    /// without it.
    pub key: Option<&'static str>,
    /// What a new event does while a run of its key is active.
    pub mode: SingletonMode,
}

/// What an event does while a run of its singleton key is active.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SingletonMode {
    /// It starts nothing (the receipt says so).
    Skip,
    /// It cancels the active run and starts its own.
    Cancel,
}

impl SingletonMode {
    /// Its name in the attribute and in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            SingletonMode::Skip => "skip",
            SingletonMode::Cancel => "cancel",
        }
    }
}

impl SendRules {
    /// The send-time rules of `def`.
    pub fn of(def: &FunctionDef) -> SendRules {
        SendRules {
            idempotency: def.idempotency.map(str::to_owned),
            priority: def.priority.map(str::to_owned),
            singleton: def.singleton.map(|s| SingletonRule {
                key: s.key.map(str::to_owned),
                mode: s.mode,
            }),
            filter: def.filter.map(str::to_owned),
            rate_limit: def.rate_limit.map(|r| RateLimitRule {
                limit: r.limit,
                period_ms: u64::try_from(r.period.as_millis()).unwrap_or(u64::MAX),
                key: r.key.map(str::to_owned),
            }),
            group: def.grouping.map(|g| g.rule()),
        }
    }

    /// No rule: the function's events are never looked at when sent.
    pub fn is_empty(&self) -> bool {
        self.idempotency.is_none()
            && self.priority.is_none()
            && self.singleton.is_none()
            && self.filter.is_none()
            && self.rate_limit.is_none()
            && self.group.is_none()
    }

    /// Refuses values the send statement cannot apply (a rate limit of zero
    /// would divide by zero there): rules announced by hand, not by the macro.
    fn check(&self) -> Result<(), String> {
        if let Some(rate) = &self.rate_limit {
            let period = std::time::Duration::from_millis(rate.period_ms);
            if rate.limit == 0 || rate.limit > MAX_RATE_LIMIT {
                return Err(format!(
                    "rate_limit: limit {} is not 1 to {MAX_RATE_LIMIT}",
                    rate.limit
                ));
            }
            if period < std::time::Duration::from_secs(1) || period > MAX_RATE_PERIOD {
                return Err(format!(
                    "rate_limit: period of {} ms is not 1 second to 366 days",
                    rate.period_ms
                ));
            }
        }
        if let Some(group) = &self.group {
            group.check()?;
        }
        Ok(())
    }

    /// The rules as stored in the catalog, with their hash; `None` when there are
    /// none.
    pub fn announced(&self) -> Option<(Value, String)> {
        if self.is_empty() {
            return None;
        }
        let json = serde_json::to_value(self).expect("send rules serialize");
        // Fields serialize in their declared order, so equal rules hash alike in
        // every process.
        let hash = format!("{:016x}", crate::flow_control::key_hash(&json.to_string()));
        Some((json, hash))
    }

    /// The version these rules are, as the catalog's tables store it: the hash
    /// (`""` for none) and the rules as JSON text (`None` for none).
    pub fn version(&self) -> (String, Option<String>) {
        match self.announced() {
            Some((json, hash)) => (hash, Some(json.to_string())),
            None => (String::new(), None),
        }
    }
}

/// One function's rules, compiled, as a sender uses them.
#[derive(Debug)]
struct Compiled {
    function_id: String,
    hash: String,
    /// Why none of its rules applies: they do not read (rules a newer flow
    /// wrote). Each event it gets starts its run, and says so.
    unreadable: Option<String>,
    /// Each rule's expression, or why it does not compile (only hand-made
    /// definitions get past the macro's check).
    idempotency: Option<Rule>,
    priority: Option<Rule>,
    /// The singleton key's expression (`None`: one key for the function), and
    /// the mode.
    singleton: Option<(Option<Rule>, SingletonMode)>,
    filter: Option<Rule>,
    /// The rate limit's key expression (`None`: one key for the function), and
    /// its limit and period.
    rate_limit: Option<(Option<Rule>, u32, std::time::Duration)>,
    /// The group's key expression (`None`: one key for the function), and its
    /// rule.
    group: Option<(Option<Rule>, crate::grouping::GroupRule)>,
}

/// A rule's compiled expression, or why it does not compile.
type Rule = Result<Expr, String>;

impl Compiled {
    fn new(function_id: &str, hash: &str, rules: &Value) -> Compiled {
        let compile = |source: Option<String>| {
            source.map(|source| Expr::compile(&source).map_err(|e| format!("its rule {e}")))
        };
        let read = serde_json::from_value::<SendRules>(rules.clone())
            .map_err(|e| e.to_string())
            .and_then(|rules| rules.check().map(|()| rules));
        let (rules, unreadable) = match read {
            Ok(rules) => (rules, None),
            Err(e) => (
                SendRules::default(),
                Some(format!("its announced rules do not read: {e}")),
            ),
        };
        Compiled {
            function_id: function_id.to_owned(),
            hash: hash.to_owned(),
            unreadable,
            idempotency: compile(rules.idempotency),
            priority: compile(rules.priority),
            singleton: rules.singleton.map(|s| (compile(s.key), s.mode)),
            filter: compile(rules.filter),
            rate_limit: rules.rate_limit.map(|r| {
                (
                    compile(r.key),
                    r.limit,
                    std::time::Duration::from_millis(r.period_ms),
                )
            }),
            group: rules.group.map(|g| (compile(g.key.clone()), g)),
        }
    }
}

/// `rule` evaluated on `event`, or why it could not be.
fn evaluate(rule: &Rule, event: &StoredEvent) -> Result<Value, String> {
    rule.as_ref()
        .map_err(Clone::clone)
        .and_then(|e| e.value(event))
}

/// The source of a rule that compiled, for messages.
fn source(rule: &Rule) -> &str {
    rule.as_ref().map_or("", Expr::source)
}

/// A key rule (`idempotency`, `singleton`) evaluated on `event` as a storable
/// key; `None` with the problem recorded when it cannot be one.
fn key_of(
    what: &str,
    rule: &Rule,
    event: &StoredEvent,
    problems: &mut Vec<String>,
) -> Option<String> {
    let problem = match evaluate(rule, event) {
        Ok(value) => {
            let key = Expr::as_key(value);
            match key_problem(&key) {
                None => return Some(key),
                Some(problem) => problem,
            }
        }
        Err(problem) => problem,
    };
    problems.push(format!("{what} not applied: {problem}"));
    None
}

/// The most seconds a `priority` moves a run, either way.
pub const MAX_PRIORITY: std::time::Duration = std::time::Duration::from_secs(600);

/// A priority's value as whole seconds, held to ±[`MAX_PRIORITY`]; the problem
/// when it is not whole seconds (no priority applies) or was held.
fn priority_seconds(value: &Value) -> (Option<i64>, Option<String>) {
    let max = MAX_PRIORITY.as_secs() as i64;
    let seconds = match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        _ => None,
    };
    match seconds {
        None => (
            None,
            Some(format!("gave {value}, not a whole number of seconds")),
        ),
        Some(s) if s.abs() > max => (
            Some(s.clamp(-max, max)),
            Some(format!(
                "gave {s} seconds, held to {} (a priority is at most {max} seconds either way)",
                s.clamp(-max, max)
            )),
        ),
        Some(s) => (Some(s), None),
    }
}

/// The send-time rules of every function that has some, by trigger.
#[derive(Debug, Default)]
pub struct Catalog {
    by_trigger: HashMap<String, Vec<Arc<Compiled>>>,
}

/// A catalog row: a function's id, trigger, rules hash and rules.
pub type CatalogRow = (String, String, String, Value);

impl Catalog {
    /// The catalog of these rows, reusing what `previous` compiled for the same
    /// function and hash.
    pub fn from_rows(rows: impl IntoIterator<Item = CatalogRow>, previous: &Catalog) -> Catalog {
        let mut by_trigger: HashMap<String, Vec<Arc<Compiled>>> = HashMap::new();
        for (id, trigger, hash, rules) in rows {
            let compiled = previous
                .by_trigger
                .get(&trigger)
                .and_then(|fns| {
                    fns.iter()
                        .find(|c| c.function_id == id && c.hash == hash)
                        .cloned()
                })
                .unwrap_or_else(|| Arc::new(Compiled::new(&id, &hash, &rules)));
            by_trigger.entry(trigger).or_default().push(compiled);
        }
        Catalog { by_trigger }
    }

    /// (function id, rules hash) of every function with rules that `names`
    /// trigger: what the send statement checks against the announced hashes.
    pub fn known<'a>(
        &'a self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> (Vec<&'a str>, Vec<&'a str>) {
        let (mut ids, mut hashes) = (Vec::new(), Vec::new());
        let mut seen = Vec::new();
        for name in names {
            if seen.contains(&name) {
                continue;
            }
            seen.push(name);
            for c in self.by_trigger.get(name).into_iter().flatten() {
                ids.push(c.function_id.as_str());
                hashes.push(c.hash.as_str());
            }
        }
        (ids, hashes)
    }

    /// What the rules decide for `events` (`position` in the send, id, event) and
    /// each function they trigger that has rules; a rule that does not evaluate
    /// is not applied and is reported.
    pub fn decide<'a>(
        &self,
        events: impl IntoIterator<Item = (usize, EventId, &'a NewEvent)>,
        now: DateTime<Utc>,
    ) -> Decisions {
        let mut decisions = Decisions::default();
        for (position, id, event) in events {
            let Some(functions) = self.by_trigger.get(event.name()) else {
                continue;
            };
            let stored = StoredEvent {
                id,
                name: event.name().to_owned(),
                data: event.data().clone(),
                ts: event.timestamp().unwrap_or(now),
            };
            for c in functions {
                let mut problems = Vec::new();
                if let Some(problem) = &c.unreadable {
                    problems.push(format!("no rule applied: {problem}"));
                }
                // An `if` that is false decides alone: the event starts nothing.
                match c.filter.as_ref().map(|rule| evaluate(rule, &stored)) {
                    Some(Ok(Value::Bool(true))) | None => {}
                    Some(Ok(Value::Bool(false))) => {
                        decisions.decided.push(Decided {
                            position,
                            event: id,
                            function: c.function_id.clone(),
                            filtered: true,
                            key: None,
                            priority: None,
                            singleton: None,
                            rate: None,
                            group: None,
                        });
                        continue;
                    }
                    Some(Ok(other)) => problems.push(format!(
                        "if not applied: `{}` gave {other}, not true or false",
                        c.filter.as_ref().map_or("", source)
                    )),
                    Some(Err(problem)) => problems.push(format!("if not applied: {problem}")),
                }
                let key = c
                    .idempotency
                    .as_ref()
                    .and_then(|rule| key_of("idempotency", rule, &stored, &mut problems));
                let priority = match c.priority.as_ref() {
                    Some(rule) => match evaluate(rule, &stored) {
                        Ok(value) => {
                            let (seconds, problem) = priority_seconds(&value);
                            if let Some(problem) = problem {
                                let what = match seconds {
                                    Some(_) => "priority applied, but",
                                    None => "priority not applied:",
                                };
                                problems.push(format!("{what} `{}` {problem}", source(rule)));
                            }
                            seconds
                        }
                        Err(problem) => {
                            problems.push(format!("priority not applied: {problem}"));
                            None
                        }
                    },
                    None => None,
                };
                let singleton = match &c.singleton {
                    Some((None, mode)) => Some((String::new(), *mode)),
                    Some((Some(rule), mode)) => {
                        key_of("singleton", rule, &stored, &mut problems).map(|key| (key, *mode))
                    }
                    None => None,
                };
                let rate = match &c.rate_limit {
                    Some((rule, limit, period)) => {
                        let key = match rule {
                            None => Some(String::new()),
                            Some(rule) => key_of("rate_limit", rule, &stored, &mut problems),
                        };
                        key.map(|key| RateKey {
                            key,
                            limit: *limit,
                            period: *period,
                        })
                    }
                    None => None,
                };
                // A key that does not evaluate leaves the event a group of its own.
                let group = match &c.group {
                    Some((rule, group)) => {
                        let key = match rule {
                            None => Some(String::new()),
                            Some(rule) => key_of("grouping", rule, &stored, &mut problems),
                        };
                        key.map(|key| crate::grouping::GroupKey {
                            key,
                            rule: group.clone(),
                        })
                    }
                    None => None,
                };
                decisions
                    .unevaluated
                    .extend(problems.into_iter().map(|problem| Unevaluated {
                        event: id,
                        function: c.function_id.clone(),
                        problem,
                    }));
                if key.is_some()
                    || priority.is_some()
                    || singleton.is_some()
                    || rate.is_some()
                    || group.is_some()
                {
                    decisions.decided.push(Decided {
                        position,
                        event: id,
                        function: c.function_id.clone(),
                        filtered: false,
                        key,
                        priority,
                        singleton,
                        rate,
                        group,
                    });
                }
            }
        }
        decisions
    }
}

/// Why a key (idempotency, singleton) cannot be stored (longer than
/// [`MATCH_VALUE_BYTES`](crate::MATCH_VALUE_BYTES), or holding a NUL): its run
/// then starts without it, and the receipt says so.
pub fn key_problem(key: &str) -> Option<String> {
    if key.len() > crate::MATCH_VALUE_BYTES {
        Some(format!(
            "the key is {} bytes long, over the {} a key may have",
            key.len(),
            crate::MATCH_VALUE_BYTES
        ))
    } else if key.contains('\0') {
        Some("the key holds a NUL character".to_owned())
    } else {
        None
    }
}

/// What a sender decided for the events of one send.
#[derive(Debug, Default)]
pub struct Decisions {
    /// What the rules decided for each (event, function) they apply to.
    pub decided: Vec<Decided>,
    /// The rules that could not be applied (or were held to their bounds).
    pub unevaluated: Vec<Unevaluated>,
}

/// What the rules decided for an event and one function it triggers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided {
    /// The event's position in the send: of two events with one key, the first
    /// starts the run.
    pub position: usize,
    /// The event.
    pub event: EventId,
    /// The function.
    pub function: String,
    /// Its `if` is false: the event starts no run of it (nothing else applies).
    pub filtered: bool,
    /// Its idempotency key, storable.
    pub key: Option<String>,
    /// Seconds by which its run jumps the backlog (negative: waits).
    pub priority: Option<i64>,
    /// Its singleton key (`""` for a function without one) and mode.
    pub singleton: Option<(String, SingletonMode)>,
    /// Its rate-limit key, with the limit.
    pub rate: Option<RateKey>,
    /// The group it joins (`batch_events`, `debounce`), with the rule.
    pub group: Option<crate::grouping::GroupKey>,
}

/// A run that an event did not start, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The event.
    pub event: EventId,
    /// The function whose run it did not start.
    pub function: String,
    /// Why.
    pub reason: SkipReason,
}

/// Why an event started no run of a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// A run with the same idempotency key started in the last 24 hours, or
    /// earlier in the same send.
    Idempotency {
        /// The key's value.
        key: String,
    },
    /// A run of the same singleton key is active (`mode = skip`).
    Singleton {
        /// The key's value (`""` for a function without a key).
        key: String,
        /// The active run.
        active: crate::RunId,
    },
    /// The function's `if` condition is false for the event.
    Filtered,
    /// A later event of the same send has the same singleton key: with
    /// `mode = skip` the first event of a key starts the run, with `mode =
    /// cancel` the last.
    SingletonInSend {
        /// The key's value.
        key: String,
    },
    /// The function's `rate_limit` held the key at its limit: the run is
    /// recorded as [`Skipped`](crate::RunStatus::Skipped), with the reason.
    RateLimited {
        /// The key's value (`""` for a function without one).
        key: String,
        /// The skipped run.
        run: crate::RunId,
    },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Idempotency { key } => write!(
                f,
                "a run with idempotency key `{key}` started in the last 24 hours"
            ),
            SkipReason::Singleton { key, active } => write!(
                f,
                "run {active} of singleton key `{key}` is active (singleton mode skip)"
            ),
            SkipReason::Filtered => {
                write!(f, "the function's `if` condition is false for this event")
            }
            SkipReason::SingletonInSend { key } => write!(
                f,
                "another event of this send has singleton key `{key}` and started the run"
            ),
            SkipReason::RateLimited { key, run } => write!(
                f,
                "rate-limit key `{key}` is at its limit; run {run} is recorded as skipped"
            ),
        }
    }
}

/// A rule that could not be applied to an event (its expression did not evaluate
/// on the event's data, or gave what the rule cannot use): the run started
/// without it. A priority past its bounds is applied, held to them, and reported
/// here too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unevaluated {
    /// The event.
    pub event: EventId,
    /// The function.
    pub function: String,
    /// What went wrong, naming the expression.
    pub problem: String,
}

/// A sender's catalog, shared by the clones of a store and replaced whole when a
/// send finds it stale.
#[derive(Debug, Default)]
pub struct CatalogCache {
    current: Mutex<Arc<Catalog>>,
}

impl CatalogCache {
    /// The catalog as last loaded (empty before the first load).
    pub fn get(&self) -> Arc<Catalog> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the catalog with these rows, keeping what compiled before.
    pub fn reload(&self, rows: impl IntoIterator<Item = CatalogRow>) -> Arc<Catalog> {
        let previous = self.get();
        let catalog = Arc::new(Catalog::from_rows(rows, &previous));
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = catalog.clone();
        catalog
    }
}

/// How many times a send reloads a stale catalog before it gives up: each reload
/// reads every announcement committed before it, so only announcements racing
/// the send itself make another round.
pub const CATALOG_RELOADS: usize = 5;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(idempotency: &str) -> SendRules {
        SendRules {
            idempotency: Some(idempotency.to_owned()),
            ..SendRules::default()
        }
    }

    fn row(id: &str, trigger: &str, r: &SendRules) -> CatalogRow {
        let (json, hash) = r.announced().expect("rules");
        (id.into(), trigger.into(), hash, json)
    }

    fn id(n: u128) -> EventId {
        EventId(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn rules_hash_alike_and_differ_with_their_text() {
        assert_eq!(SendRules::default().announced(), None);
        let a = rules("event.data.order").announced().expect("a");
        assert_eq!(a, rules("event.data.order").announced().expect("again"));
        assert_ne!(a.1, rules("event.data.other").announced().expect("b").1);
        assert_eq!(a.0, json!({"idempotency": "event.data.order"}));
    }

    #[test]
    fn a_rate_limit_starts_limit_at_once_then_one_per_interval() {
        let rate = RateKey {
            key: "u1".into(),
            limit: 2,
            period: std::time::Duration::from_secs(3600),
        };
        assert_eq!(rate.interval(), chrono::TimeDelta::minutes(30));
        assert_eq!(rate.tolerance(), chrono::TimeDelta::minutes(30));
        let t0 = DateTime::from_timestamp(1_000_000, 0).expect("a time");
        let at = |m: i64| t0 + chrono::TimeDelta::minutes(m);
        let first = rate.admit(None, t0).expect("the first");
        let second = rate.admit(Some(first), t0).expect("the second, at once");
        assert_eq!(second, at(60));
        assert_eq!(rate.admit(Some(second), at(29)), None, "too early");
        assert_eq!(rate.admit(Some(second), at(30)), Some(at(90)));
        // After a quiet spell the key starts afresh, with no credit saved up.
        assert_eq!(rate.admit(Some(second), at(600)), Some(at(630)));
        assert!(
            rate.reason("alert")
                .contains("allows 2 runs per 1h for rate-limit key `u1`")
        );
        // Rules with a rate limit are announced, and hash apart from those without.
        let limited = SendRules {
            rate_limit: Some(RateLimitRule {
                limit: 2,
                period_ms: 3_600_000,
                key: Some("event.data.user".into()),
            }),
            ..SendRules::default()
        };
        let (json, _) = limited.announced().expect("announced");
        assert_eq!(
            json,
            json!({"rate_limit": {"limit": 2, "period_ms": 3_600_000, "key": "event.data.user"}})
        );
    }

    #[test]
    fn events_are_keyed_per_function_and_a_bad_key_is_reported() {
        let catalog = Catalog::from_rows(
            [
                row("charge", "app/order", &rules("event.data.order")),
                row(
                    "audit",
                    "app/order",
                    &rules("event.data.customer + ':' + event.name"),
                ),
                row("other", "app/other", &rules("event.data.x")),
            ],
            &Catalog::default(),
        );
        let ok = NewEvent::raw("app/order", json!({"order": 7, "customer": "c"})).unwrap();
        let lacking = NewEvent::raw("app/order", json!({"order": 8})).unwrap();
        let untouched = NewEvent::raw("app/none", json!({})).unwrap();
        let d = catalog.decide(
            [
                (0, id(1), &ok),
                (1, id(2), &lacking),
                (2, id(3), &untouched),
            ],
            Utc::now(),
        );
        let keys: Vec<(usize, &str, &str)> = d
            .decided
            .iter()
            .map(|k| (k.position, k.function.as_str(), k.key.as_deref().unwrap()))
            .collect();
        assert_eq!(
            keys,
            [
                (0, "charge", "7"),
                (0, "audit", "c:app/order"),
                (1, "charge", "8")
            ]
        );
        assert_eq!(d.unevaluated.len(), 1);
        assert_eq!(d.unevaluated[0].function, "audit");
        assert!(
            d.unevaluated[0].problem.contains("event.data.customer"),
            "{}",
            d.unevaluated[0].problem
        );
        let (ids, _) = catalog.known(["app/order", "app/order", "app/none"]);
        assert_eq!(ids, ["charge", "audit"]);
    }

    #[test]
    fn rules_that_do_not_read_leave_runs_unkeyed_with_the_reason() {
        let catalog = Catalog::from_rows(
            [(
                "f".into(),
                "t".into(),
                "h".into(),
                json!({"idempotency": "event.data.x", "from_a_newer_flow": 1}),
            )],
            &Catalog::default(),
        );
        let event = NewEvent::raw("t", json!({"x": 1})).unwrap();
        let d = catalog.decide([(0, id(1), &event)], Utc::now());
        assert!(d.decided.is_empty());
        assert!(
            d.unevaluated[0].problem.contains("do not read"),
            "{:?}",
            d.unevaluated
        );
    }

    #[test]
    fn a_rate_limit_the_statement_cannot_apply_leaves_runs_unlimited_with_the_reason() {
        // Announced by hand: a limit of zero would divide by zero in the send.
        let catalog = Catalog::from_rows(
            [(
                "f".into(),
                "t".into(),
                "h".into(),
                json!({"rate_limit": {"limit": 0, "period_ms": 60_000}}),
            )],
            &Catalog::default(),
        );
        let event = NewEvent::raw("t", json!({})).unwrap();
        let d = catalog.decide([(0, id(1), &event)], Utc::now());
        assert!(d.decided.is_empty());
        let problem = &d.unevaluated[0].problem;
        assert!(
            problem.contains("rate_limit: limit 0 is not 1 to"),
            "{problem}"
        );
    }

    #[test]
    fn priorities_are_whole_seconds_held_to_their_bounds() {
        let rules = SendRules {
            priority: Some("event.data.p".into()),
            ..SendRules::default()
        };
        let catalog = Catalog::from_rows([row("f", "t", &rules)], &Catalog::default());
        let decide = |p: Value| {
            let event = NewEvent::raw("t", json!({ "p": p })).unwrap();
            let d = catalog.decide([(0, id(1), &event)], Utc::now());
            let problem = d.unevaluated.first().map(|u| u.problem.clone());
            (d.decided.first().and_then(|d| d.priority), problem)
        };
        assert_eq!(decide(json!(120)), (Some(120), None));
        assert_eq!(decide(json!(-30)), (Some(-30), None));
        assert_eq!(decide(json!(2.0)), (Some(2), None));
        let (held, problem) = decide(json!(4000));
        assert_eq!(held, Some(600));
        assert!(problem.unwrap().contains("held to 600"));
        assert_eq!(decide(json!(-4000)).0, Some(-600));
        let (none, problem) = decide(json!("soon"));
        assert_eq!(none, None);
        let problem = problem.unwrap();
        assert!(
            problem.contains("not a whole number") && problem.contains("`event.data.p`"),
            "{problem}"
        );
        assert_eq!(decide(json!(1.5)).0, None);
    }

    #[test]
    fn a_reload_keeps_what_compiled_for_the_same_hash() {
        let cache = CatalogCache::default();
        let first = cache.reload([row("f", "t", &rules("event.data.x"))]);
        let second = cache.reload([row("f", "t", &rules("event.data.x"))]);
        assert!(Arc::ptr_eq(
            &first.by_trigger["t"][0],
            &second.by_trigger["t"][0]
        ));
        let third = cache.reload([row("f", "t", &rules("event.data.y"))]);
        assert!(!Arc::ptr_eq(
            &first.by_trigger["t"][0],
            &third.by_trigger["t"][0]
        ));
    }
}
