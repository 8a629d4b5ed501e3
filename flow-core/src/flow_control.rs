//! Flow control: how many runs of a function may execute at once (`concurrency`)
//! or be active at once (`run_concurrency`), and how fast they may start
//! (`throttle`), enforced by the claim, in the database, so that a limit holds
//! across every worker process.
//!
//! A run of a limited function holds one slot per `concurrency(...)` rule while it
//! is `running` under a live lease: a sleeping or waiting run holds none, and the
//! slot of a worker that died frees itself when its lease expires. Each rule names
//! a key: its scope (the function, or a name shared by several functions) and the
//! value of its CEL `key` for the run's event. The worker that first considers a
//! run for a claim evaluates its keys (with the configuration it serves) and stores
//! them on the run; the claim then counts the running runs of each key after
//! locking the keys, so two claimers never both take the last slot. A
//! `run_concurrency(...)` key is held from a run's first start to its end, sleeps
//! and waits included: a run that has not started is admitted only while fewer
//! runs of the key are active (counted after the lock alike). A throttle key is
//! locked alike, and its state (GCRA) read after the lock.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};

use crate::expr::Expr;
use crate::{FunctionDef, StoredEvent};

/// The most `concurrency(...)` rules a function may have, and the most
/// `run_concurrency(...)` rules.
pub const MAX_CONCURRENCY_RULES: usize = 2;

/// The highest `limit` a rule may set.
pub const MAX_CONCURRENCY_LIMIT: u32 = 100_000;

/// Checks a shared scope's name: 1 to 128 bytes of letters, digits and `-_./:`
/// (the macro checks the same).
pub fn check_scope_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!(
            "the shared scope name `{name}` must be 1 to 128 bytes long"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_./:".contains(*c)))
    {
        return Err(format!(
            "the shared scope name `{name}` has `{}`; use letters, digits and `-_./:`",
            c.escape_default()
        ));
    }
    Ok(())
}

/// `#[function(concurrency(limit = 5, key = "event.data.customer_id"))]`: at most
/// `limit` runs executing at once per value of `key` (one group without a key),
/// counted in `scope`. The same rule under `run_concurrency(...)` counts the runs
/// that are active (started and not ended, sleeping and waiting ones included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Concurrency {
    /// Runs executing at once, per key.
    pub limit: u32,
    /// A CEL expression over `event` whose value is the key.
    pub key: Option<&'static str>,
    /// Whose runs count against the limit.
    pub scope: ConcurrencyScope,
}

/// Whose runs share a concurrency key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConcurrencyScope {
    /// This function's runs only (`scope = fn`, the default).
    Function,
    /// The runs of every function that names this scope (`scope = shared("llm")`),
    /// each held to its own function's limit.
    Shared(&'static str),
}

/// The most `throttle(...)` rules a function may have.
pub const MAX_THROTTLE_RULES: usize = 2;

/// `#[function(throttle(limit = 10, period = "1m", burst = 2, key = "..."))]`: at
/// most `limit` run starts per `period` per key, spread evenly (one every
/// `period / limit`), with up to `limit + burst` at once after a quiet spell.
/// Runs over the limit wait their turn, first in first out; none is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    /// Starts per period.
    pub limit: u32,
    /// The period.
    pub period: std::time::Duration,
    /// Starts allowed at once beyond `limit`.
    pub burst: u32,
    /// A CEL expression over `event` whose value is the key.
    pub key: Option<&'static str>,
    /// Whose runs share the key's starts.
    pub scope: ConcurrencyScope,
}

/// The concurrency and throttle rules of the functions a worker serves,
/// compiled: what a claim needs to key runs and admit them.
#[derive(Debug, Default)]
pub struct Limited {
    rules: HashMap<String, Vec<Rule>>,
    ids: Vec<String>,
}

/// A function's rule: its concurrency rules first, then its throttles, in the
/// order of its keys.
#[derive(Debug)]
struct Rule {
    kind: RuleKind,
    /// The scope's part of every key of this rule.
    scope: String,
    key: Option<Expr>,
}

#[derive(Debug)]
enum RuleKind {
    /// Runs executing at once.
    Concurrency { limit: u32 },
    /// Runs active at once (`run_concurrency`): started and not ended.
    Active { limit: u32 },
    /// GCRA: one start per `interval`, up to `tolerance / interval + 1` at once.
    Throttle {
        interval: TimeDelta,
        tolerance: TimeDelta,
    },
}

/// A due run a claim may take: its function, its keys (already evaluated), and
/// whether it has started (a throttle and `run_concurrency` count starts only).
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Its function.
    pub function_id: String,
    /// One per rule of the function, in the rules' order.
    pub keys: Vec<String>,
    /// It ran before: a throttle does not hold it.
    pub started: bool,
}

/// What a claim decided: the candidates it admits, and those a throttle holds,
/// with the time their key next allows a start.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Indexes of the admitted candidates, in claim order.
    pub admitted: Vec<usize>,
    /// Candidates held by a throttle, and when to try them again.
    pub throttled: Vec<(usize, DateTime<Utc>)>,
}

impl Limited {
    /// The rules of `defs` that have any; a key that does not compile is an error
    /// naming the function (the macro checks them first, so only a hand-made
    /// definition gets here).
    pub fn of<'a>(defs: impl IntoIterator<Item = &'a FunctionDef>) -> Result<Limited, String> {
        let mut limited = Limited::default();
        for def in defs {
            if def.concurrency.is_empty()
                && def.run_concurrency.is_empty()
                && def.throttle.is_empty()
            {
                continue;
            }
            let compile = |key: Option<&str>, what: &str| {
                key.map(Expr::compile)
                    .transpose()
                    .map_err(|e| format!("function `{}`: {what} key {e}", def.id))
            };
            let scope_of = |scope: ConcurrencyScope| match scope {
                ConcurrencyScope::Function => format!("fn\u{1f}{}", def.id),
                ConcurrencyScope::Shared(name) => format!("shared\u{1f}{name}"),
            };
            let mut rules = Vec::with_capacity(
                def.concurrency.len() + def.run_concurrency.len() + def.throttle.len(),
            );
            for c in def.concurrency {
                rules.push(Rule {
                    kind: RuleKind::Concurrency { limit: c.limit },
                    scope: scope_of(c.scope),
                    key: compile(c.key, "concurrency")?,
                });
            }
            for c in def.run_concurrency {
                rules.push(Rule {
                    kind: RuleKind::Active { limit: c.limit },
                    // Active keys never meet executing keys of the same scope.
                    scope: format!("{ACTIVE}{}", scope_of(c.scope)),
                    key: compile(c.key, "run_concurrency")?,
                });
            }
            for t in def.throttle {
                if t.limit == 0 || t.period.is_zero() {
                    return Err(format!(
                        "function `{}`: a throttle needs a limit and a period above zero",
                        def.id
                    ));
                }
                let period = TimeDelta::from_std(t.period)
                    .map_err(|e| format!("function `{}`: throttle period: {e}", def.id))?;
                let interval = period / i32::try_from(t.limit).unwrap_or(i32::MAX);
                // `limit + burst` starts at once: the first and `limit + burst - 1`
                // more within the tolerance. A hand-made definition past the range
                // of time is refused, not a panic.
                let at_once =
                    i32::try_from(t.limit.saturating_add(t.burst) - 1).unwrap_or(i32::MAX);
                let tolerance = interval.checked_mul(at_once).ok_or_else(|| {
                    format!(
                        "function `{}`: a throttle's period times its limit and burst is \
                         past the range of time",
                        def.id
                    )
                })?;
                rules.push(Rule {
                    kind: RuleKind::Throttle {
                        interval,
                        tolerance,
                    },
                    // Throttle keys never meet concurrency keys of the same scope.
                    scope: format!("{THROTTLE}{}", scope_of(t.scope)),
                    key: compile(t.key, "throttle")?,
                });
            }
            limited.ids.push(def.id.to_owned());
            limited.rules.insert(def.id.to_owned(), rules);
        }
        Ok(limited)
    }

    /// No rules: for a claim of unlimited functions only.
    pub fn none() -> &'static Limited {
        static NONE: std::sync::LazyLock<Limited> = std::sync::LazyLock::new(Limited::default);
        &NONE
    }

    /// The ids of the limited functions.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// No function is limited.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Every counted rule as (function, its position counted from 1, limit,
    /// whether it counts active runs): what a SQL claim joins a run's keys (in
    /// rule order) with.
    pub fn rule_table(&self) -> RuleTable<'_> {
        let mut table = RuleTable::default();
        for (function, rules) in &self.rules {
            for (i, rule) in rules.iter().enumerate() {
                let (limit, active) = match rule.kind {
                    RuleKind::Concurrency { limit } => (limit, false),
                    RuleKind::Active { limit } => (limit, true),
                    RuleKind::Throttle { .. } => continue,
                };
                table.functions.push(function.as_str());
                table.positions.push(i as i32 + 1);
                table.limits.push(i32::try_from(limit).unwrap_or(i32::MAX));
                table.active.push(active);
            }
        }
        table
    }

    /// Whether some function counts active runs (`run_concurrency`).
    pub fn counts_active(&self) -> bool {
        self.rules
            .values()
            .flatten()
            .any(|rule| matches!(rule.kind, RuleKind::Active { .. }))
    }

    /// Whether `function` has concurrency or throttle rules.
    pub fn is_limited(&self, function: &str) -> bool {
        self.rules.contains_key(function)
    }

    /// The keys of a run of `function` with `event`, one per rule; an error names
    /// the expression that could not be evaluated on this event.
    pub fn keys(&self, function: &str, event: &StoredEvent) -> Result<Vec<String>, String> {
        let Some(rules) = self.rules.get(function) else {
            return Ok(Vec::new());
        };
        rules
            .iter()
            .map(|rule| {
                let what = match rule.kind {
                    RuleKind::Concurrency { .. } => "concurrency",
                    RuleKind::Active { .. } => "run_concurrency",
                    RuleKind::Throttle { .. } => "throttle",
                };
                let value = match &rule.key {
                    Some(expr) => expr.key(event).map_err(|e| format!("{what} key {e}"))?,
                    None => String::new(),
                };
                Ok(format!("{}\u{1f}{value}", rule.scope))
            })
            .collect()
    }

    /// `function \x1e key` for every key in `held` (runs executing per
    /// executing key, runs active per active key) that is full for a rule of
    /// `function`: what a SQLite claim leaves out (an active key only for runs
    /// that have not started).
    pub fn full_pairs(&self, held: &HashMap<String, u64>) -> Vec<String> {
        let mut full = Vec::new();
        for (function, rules) in &self.rules {
            for rule in rules {
                let (RuleKind::Concurrency { limit } | RuleKind::Active { limit }) = rule.kind
                else {
                    continue;
                };
                for (key, n) in held {
                    if *n >= u64::from(limit)
                        && key
                            .strip_prefix(rule.scope.as_str())
                            .is_some_and(|v| v.starts_with('\u{1f}'))
                    {
                        full.push(format!("{function}\u{1e}{key}"));
                    }
                }
            }
        }
        full
    }

    /// Which of `candidates` (in claim order) may start, at most `max`: each only
    /// if every one of its concurrency keys has fewer runs executing than its
    /// function's limit for it, counting `held` (per key) and the candidates
    /// admitted before it, and, for a run that has not started, every active key
    /// has fewer runs active (by `held` and the admitted alike) and every throttle
    /// key allows a start at `now` by `throttles` (each key's theoretical arrival
    /// time, which admitted starts move on). `held` counts runs executing for an
    /// executing key, active runs for an active key. A candidate of a function
    /// these rules do not know is not admitted.
    pub fn admit(
        &self,
        candidates: &[Candidate],
        held: &HashMap<String, u64>,
        throttles: &mut HashMap<String, DateTime<Utc>>,
        now: DateTime<Utc>,
        max: usize,
    ) -> Admission {
        let mut taken: HashMap<&str, u64> = HashMap::new();
        let mut admission = Admission::default();
        for (i, candidate) in candidates.iter().enumerate() {
            if admission.admitted.len() == max {
                break;
            }
            let Some(rules) = self.rules.get(&candidate.function_id) else {
                continue;
            };
            if rules.len() != candidate.keys.len() {
                // Keyed under another configuration: its keys are evaluated again.
                continue;
            }
            let fits = rules.iter().zip(&candidate.keys).all(|(rule, key)| {
                let limit = match rule.kind {
                    RuleKind::Concurrency { limit } => limit,
                    RuleKind::Active { limit } if !candidate.started => limit,
                    RuleKind::Active { .. } | RuleKind::Throttle { .. } => return true,
                };
                let busy = held.get(key).copied().unwrap_or(0)
                    + taken.get(key.as_str()).copied().unwrap_or(0);
                busy < u64::from(limit)
            });
            if !fits {
                continue;
            }
            // GCRA: a start is allowed while the key's arrival time is within the
            // tolerance of now; each start moves it one interval on.
            let mut held_until = None;
            if !candidate.started {
                for (rule, key) in rules.iter().zip(&candidate.keys) {
                    if let RuleKind::Throttle { tolerance, .. } = rule.kind {
                        let tat = throttles.get(key).copied().unwrap_or(now).max(now);
                        if tat - now > tolerance {
                            held_until = held_until.max(Some(tat - tolerance));
                        }
                    }
                }
            }
            if let Some(until) = held_until {
                admission.throttled.push((i, until));
                continue;
            }
            for (rule, key) in rules.iter().zip(&candidate.keys) {
                match rule.kind {
                    RuleKind::Concurrency { .. } => *taken.entry(key).or_default() += 1,
                    RuleKind::Active { .. } if !candidate.started => {
                        *taken.entry(key).or_default() += 1;
                    }
                    RuleKind::Active { .. } => {}
                    RuleKind::Throttle { interval, .. } if !candidate.started => {
                        let tat = throttles.get(key).copied().unwrap_or(now).max(now);
                        throttles.insert(key.clone(), tat + interval);
                    }
                    RuleKind::Throttle { .. } => {}
                }
            }
            admission.admitted.push(i);
        }
        admission
    }

    /// Whether `key` (of a candidate's keys) is a throttle's.
    pub fn is_throttle_key(key: &str) -> bool {
        key.starts_with(THROTTLE)
    }

    /// Whether `key` (of a candidate's keys) is a `run_concurrency` rule's.
    pub fn is_active_key(key: &str) -> bool {
        key.starts_with(ACTIVE)
    }
}

/// The prefix of a throttle's keys.
const THROTTLE: &str = "throttle\u{1f}";

/// The prefix of a `run_concurrency` rule's keys (the SQL of both backends
/// knows it too).
pub const ACTIVE: &str = "active\u{1f}";

/// [`Limited::rule_table`]: the counted rules, one per row across the vectors.
#[derive(Debug, Default)]
pub struct RuleTable<'a> {
    /// The rule's function.
    pub functions: Vec<&'a str>,
    /// Its position among the function's rules (and so its keys), from 1.
    pub positions: Vec<i32>,
    /// Its limit.
    pub limits: Vec<i32>,
    /// It counts active runs (`run_concurrency`), not executing ones.
    pub active: Vec<bool>,
}

/// A 64-bit hash of a key that every process computes alike (FNV-1a): what the
/// PostgreSQL claim locks a key by.
pub fn key_hash(key: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventId;

    const RULES: &[Concurrency] = &[
        Concurrency {
            limit: 1,
            key: Some("event.data.customer"),
            scope: ConcurrencyScope::Function,
        },
        Concurrency {
            limit: 2,
            key: None,
            scope: ConcurrencyScope::Shared("llm"),
        },
    ];

    static DEF: FunctionDef = FunctionDef {
        id: "classify",
        trigger: "app/thread",
        concurrency: RULES,
        ..crate::function::tests::A
    };

    fn def() -> &'static FunctionDef {
        &DEF
    }

    fn event(customer: &str) -> StoredEvent {
        StoredEvent {
            id: EventId(uuid::Uuid::nil()),
            name: "app/thread".into(),
            data: serde_json::json!({ "customer": customer }),
            ts: chrono::DateTime::from_timestamp(0, 0).expect("a time"),
        }
    }

    #[test]
    fn keys_name_their_scope_and_value() {
        let def = def();
        let limited = Limited::of([def]).expect("compiles");
        assert_eq!(limited.ids(), ["classify"]);
        assert_eq!(
            limited.keys("classify", &event("c1")),
            Ok(vec![
                "fn\u{1f}classify\u{1f}c1".to_owned(),
                "shared\u{1f}llm\u{1f}".to_owned()
            ])
        );
        assert_eq!(limited.keys("other", &event("c1")), Ok(vec![]));
    }

    #[test]
    fn admission_holds_every_key_to_its_limit_in_claim_order() {
        let def = def();
        let limited = Limited::of([def]).expect("compiles");
        let candidate = |c: &str| Candidate {
            function_id: "classify".into(),
            keys: limited.keys("classify", &event(c)).expect("keys"),
            started: false,
        };
        let candidates = [
            candidate("a"),
            candidate("a"),
            candidate("b"),
            candidate("c"),
        ];
        let now = chrono::Utc::now();
        let admit = |running: &HashMap<String, u64>, max| {
            limited
                .admit(&candidates, running, &mut HashMap::new(), now, max)
                .admitted
        };
        // Per customer one, and two in all (the shared rule).
        assert_eq!(admit(&HashMap::new(), 10), [0, 2]);
        // One shared slot is taken elsewhere: only the first fits.
        let running = HashMap::from([("shared\u{1f}llm\u{1f}".to_owned(), 1)]);
        assert_eq!(admit(&running, 10), [0]);
        // Customer `a` is busy: `b` and then `c` would, but the shared rule allows two.
        let running = HashMap::from([(candidate("a").keys[0].clone(), 1)]);
        assert_eq!(admit(&running, 10), [2, 3]);
        // What a SQLite claim leaves out: `a`'s key, for this function.
        assert_eq!(
            limited.full_pairs(&running),
            [format!("classify\u{1e}{}", candidate("a").keys[0])]
        );
        // `max` caps the claim.
        assert_eq!(admit(&HashMap::new(), 1), [0]);
    }

    #[test]
    fn run_concurrency_holds_runs_that_have_not_started_only() {
        static ACTIVE_RULES: &[Concurrency] = &[Concurrency {
            limit: 1,
            key: Some("event.data.customer"),
            scope: ConcurrencyScope::Function,
        }];
        static TRIAL: FunctionDef = FunctionDef {
            id: "trial",
            run_concurrency: ACTIVE_RULES,
            ..crate::function::tests::A
        };
        let limited = Limited::of([&TRIAL]).expect("compiles");
        assert!(limited.counts_active());
        let table = limited.rule_table();
        assert_eq!(
            (table.limits.as_slice(), table.active.as_slice()),
            (&[1][..], &[true][..])
        );
        let candidate = |c: &str, started| Candidate {
            function_id: "trial".into(),
            keys: limited.keys("trial", &event(c)).expect("keys"),
            started,
        };
        let key = candidate("a", false).keys[0].clone();
        assert!(Limited::is_active_key(&key), "{key:?}");
        assert!(!Limited::is_throttle_key(&key));
        let now = chrono::Utc::now();
        let admit = |candidates: &[Candidate], held: &HashMap<String, u64>| {
            limited
                .admit(candidates, held, &mut HashMap::new(), now, 10)
                .admitted
        };
        // One new run per key; a run that started (it slept, and woke) is not held.
        let mixed = [
            candidate("a", false),
            candidate("a", false),
            candidate("a", true),
            candidate("b", false),
        ];
        assert_eq!(admit(&mixed, &HashMap::new()), [0, 2, 3]);
        // A sleeping run of `a` is active: no new run of `a` starts.
        let held = HashMap::from([(key.clone(), 1)]);
        assert_eq!(admit(&mixed, &held), [2, 3]);
        assert_eq!(limited.full_pairs(&held), [format!("trial\u{1e}{key}")]);
    }

    const THROTTLES: &[Throttle] = &[Throttle {
        limit: 2,
        period: std::time::Duration::from_secs(60),
        burst: 1,
        key: Some("event.data.customer"),
        scope: ConcurrencyScope::Function,
    }];

    static THROTTLED: FunctionDef = FunctionDef {
        id: "sync",
        trigger: "app/sync",
        throttle: THROTTLES,
        ..crate::function::tests::A
    };

    #[test]
    fn hand_made_throttles_out_of_range_are_refused_or_held_not_a_panic() {
        static HUGE: &[Throttle] = &[Throttle {
            limit: 1,
            period: std::time::Duration::from_secs(366 * 86_400),
            burst: u32::MAX,
            key: None,
            scope: ConcurrencyScope::Function,
        }];
        static DEF: FunctionDef = FunctionDef {
            throttle: HUGE,
            ..crate::function::tests::A
        };
        // `limit + burst` would overflow: held to the most starts at once.
        let limited = Limited::of([&DEF]).expect("a huge burst is a long tolerance");
        let candidate = Candidate {
            function_id: "same".into(),
            keys: limited.keys("same", &event("a")).expect("keys"),
            started: false,
        };
        let now = chrono::Utc::now();
        let admission = limited.admit(
            &[candidate.clone(), candidate],
            &HashMap::new(),
            &mut HashMap::new(),
            now,
            10,
        );
        assert_eq!(admission.admitted, [0, 1]);
        // A period past what a time can hold is an error naming the function.
        static LONG: &[Throttle] = &[Throttle {
            period: std::time::Duration::MAX,
            burst: 0,
            ..HUGE[0]
        }];
        static LONG_DEF: FunctionDef = FunctionDef {
            throttle: LONG,
            ..crate::function::tests::A
        };
        let err = Limited::of([&LONG_DEF]).expect_err("too long");
        assert!(err.contains("function `same`: throttle period"), "{err}");
    }

    #[test]
    fn a_throttle_starts_limit_plus_burst_at_once_then_one_per_interval() {
        let limited = Limited::of([&THROTTLED]).expect("compiles");
        assert!(limited.is_limited("sync"));
        assert_eq!(limited.rule_table().functions.len(), 0, "no counted rule");
        let candidate = |c: &str, started| Candidate {
            function_id: "sync".into(),
            keys: limited.keys("sync", &event(c)).expect("keys"),
            started,
        };
        assert!(Limited::is_throttle_key(&candidate("a", false).keys[0]));
        let t0 = chrono::DateTime::from_timestamp(1_000, 0).expect("a time");
        let at = |s: i64| t0 + TimeDelta::seconds(s);
        let mut state = HashMap::new();
        let five: Vec<Candidate> = (0..5).map(|_| candidate("a", false)).collect();
        // limit 2 + burst 1 at once; the rest held until the next start, 30 s on.
        let first = limited.admit(&five, &HashMap::new(), &mut state, t0, 10);
        assert_eq!(first.admitted, [0, 1, 2]);
        assert_eq!(first.throttled, [(3, at(30)), (4, at(30))]);
        // Too early: still held.
        let early = limited.admit(&five[3..], &HashMap::new(), &mut state, at(29), 10);
        assert!(early.admitted.is_empty());
        // One start per 30 s.
        let next = limited.admit(&five[3..], &HashMap::new(), &mut state, at(30), 10);
        assert_eq!(next.admitted, [0]);
        assert_eq!(next.throttled, [(1, at(60))]);
        // Another key is throttled apart, and a run that started is not held.
        let others = [candidate("b", false), candidate("a", true)];
        let other = limited.admit(&others, &HashMap::new(), &mut state, at(30), 10);
        assert_eq!(other.admitted, [0, 1]);
    }

    #[test]
    fn a_key_that_does_not_evaluate_is_an_error_for_that_run() {
        let def = def();
        let limited = Limited::of([def]).expect("compiles");
        let mut e = event("a");
        e.data = serde_json::json!({});
        let err = limited.keys("classify", &e).expect_err("no customer");
        assert!(
            err.starts_with("concurrency key `event.data.customer`"),
            "{err}"
        );
    }

    #[test]
    fn key_hashes_are_stable() {
        assert_eq!(key_hash(""), 0xcbf2_9ce4_8422_2325_u64 as i64);
        assert_ne!(key_hash("a"), key_hash("b"));
    }
}
