//! The grammars of `#[function(...)]` and `#[step(...)]`: `key = value` pairs and a
//! nested `backoff(...)`. Every mistake is recorded, none stops the parse.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, LitStr};

use crate::errors::Errors;

/// The most retries a function or step may ask for (flow_core::MAX_RETRIES).
const MAX_RETRIES: u64 = 20;

/// The most `cancel_on` a function may have (flow_core::MAX_CANCEL_ON).
const MAX_CANCEL_ON: usize = 5;

#[derive(Default)]
pub struct Backoff {
    pub initial: Option<(u64, Span)>,
    pub max: Option<(u64, Span)>,
    pub factor: Option<f64>,
    pub jitter: Option<f64>,
}

#[derive(Default)]
pub struct FunctionArgs {
    /// `event = "..."`, once per event trigger, in the order given.
    pub events: Vec<LitStr>,
    pub id: Option<LitStr>,
    pub retries: Option<u32>,
    pub backoff: Backoff,
    /// `on_failure = path`: the fn that runs when a run of this function fails for good.
    pub on_failure: Option<syn::Path>,
    /// `cancel_on(event = "...", match = field)`, in the order given.
    pub cancel_on: Vec<CancelOnArg>,
    /// `timeouts(start = "...", finish = "...")`, in milliseconds.
    pub timeouts: Timeouts,
    /// `concurrency(...)` or `concurrency = n`, in the order given.
    pub concurrency: Vec<ConcurrencyArg>,
    /// `run_concurrency(...)` or `run_concurrency = n`, in the order given.
    pub run_concurrency: Vec<ConcurrencyArg>,
    /// `throttle(...)`, in the order given.
    pub throttle: Vec<ThrottleArg>,
    /// `idempotency = "<CEL>"`: the key of which one run starts per 24 hours.
    pub idempotency: Option<crate::cel::CheckedExpr>,
    /// `priority = "<CEL>"`: seconds by which a run jumps the backlog.
    pub priority: Option<crate::cel::CheckedExpr>,
    /// `singleton(key = "<CEL>", mode = skip | cancel)`.
    pub singleton: Option<SingletonArg>,
    /// `if = "<CEL>"`: only events for which it is true start a run.
    pub filter: Option<crate::cel::CheckedExpr>,
    /// `rate_limit(limit = 1, period = "4h", key = "<CEL>")`.
    pub rate_limit: Option<RateLimitArg>,
    /// `cron = "0 9 * * 1"` (or `"TZ=Asia/Tokyo 0 9 * * 1"`), checked, once per
    /// schedule.
    pub crons: Vec<CronArg>,
    /// `cron` was written, valid or not (a refused one is its own error, not a
    /// missing trigger).
    pub cron_written: bool,
    /// `batch_events(...)` or `debounce(...)`.
    pub grouping: Option<GroupingArg>,
    /// One of them was written, valid or not (a refused one is its own error,
    /// not a reason to refuse the handler's `Vec<E>` too).
    pub grouping_written: bool,
}

/// `batch_events(max_size = 100, timeout = "5s", key = "<CEL>")` or
/// `debounce(period = "5m", key = "<CEL>", timeout = "1h", events = all)`.
pub struct GroupingArg {
    /// Where it was written, for errors about it beside others.
    pub span: Span,
    /// `Some(max_size)` for a batch; `None` for a debounce.
    pub batch: Option<u32>,
    /// A debounce's quiet time, in milliseconds.
    pub period: Option<u64>,
    /// A batch's or a debounce's timeout, in milliseconds.
    pub timeout: Option<u64>,
    pub key: Option<crate::cel::CheckedExpr>,
    /// The handler takes every event (`Vec<E>`): a batch, or `events = all`.
    pub all: bool,
}

impl GroupingArg {
    /// The attribute it was written as.
    pub fn attribute(&self) -> &'static str {
        match self.batch {
            Some(_) => "batch_events",
            None => "debounce",
        }
    }
}

/// The most events a batch holds (flow_core::grouping::MAX_GROUP_EVENTS).
const MAX_BATCH_SIZE: u64 = 1_000;

/// The longest a group waits, in milliseconds (flow_core::grouping::MAX_GROUP_WAIT).
const MAX_GROUP_WAIT_MS: u64 = 7 * 86_400_000;

/// `cron = "..."` with its zone (`timezone = "..."` or a `TZ=` prefix, else UTC).
pub struct CronArg {
    /// The attribute's literal, for errors about it beside others.
    pub lit: LitStr,
    pub schedule: String,
    pub timezone: String,
    /// `catch_up = N`: missed ticks a starting worker sends (0: skipped).
    pub catch_up: u32,
}

/// The most missed ticks `catch_up` may send (flow_core::cron::MAX_CATCH_UP).
const MAX_CATCH_UP: u64 = 100;

/// `rate_limit(limit = 1, period = "4h", key = "<CEL>")`.
pub struct RateLimitArg {
    pub limit: u32,
    /// Milliseconds.
    pub period: u64,
    pub key: Option<crate::cel::CheckedExpr>,
}

/// `singleton(key = "<CEL>", mode = skip | cancel)`.
pub struct SingletonArg {
    pub key: Option<crate::cel::CheckedExpr>,
    /// `true` for `mode = cancel`.
    pub cancel: bool,
}

/// The most `concurrency(...)` rules (flow_core::flow_control::MAX_CONCURRENCY_RULES).
const MAX_CONCURRENCY_RULES: usize = 2;

/// The highest concurrency limit (flow_core::flow_control::MAX_CONCURRENCY_LIMIT).
const MAX_CONCURRENCY_LIMIT: u64 = 100_000;

/// One `concurrency(limit = 5, key = "...", scope = fn | shared("name"))`.
pub struct ConcurrencyArg {
    /// Where the rule was written, for errors about it beside others.
    pub span: Span,
    pub limit: u32,
    pub key: Option<crate::cel::CheckedExpr>,
    /// `shared("name")`; `None` for the function's own runs.
    pub shared: Option<LitStr>,
}

impl ConcurrencyArg {
    /// What two rules must not share: the scope and the key's text.
    fn identity(&self) -> (Option<String>, Option<String>) {
        (
            self.shared.as_ref().map(LitStr::value),
            self.key.as_ref().map(|k| k.lit.value()),
        )
    }
}

/// The most `throttle(...)` rules (flow_core::flow_control::MAX_THROTTLE_RULES).
const MAX_THROTTLE_RULES: usize = 2;

/// One `throttle(limit = 10, period = "1m", burst = 2, key = "...", scope = ...)`.
pub struct ThrottleArg {
    pub limit: u32,
    /// Milliseconds.
    pub period: u64,
    pub burst: u32,
    pub key: Option<crate::cel::CheckedExpr>,
    pub shared: Option<LitStr>,
}

/// `timeouts(start = "10m", finish = "1h")`, in milliseconds.
#[derive(Default)]
pub struct Timeouts {
    pub start: Option<u64>,
    pub finish: Option<u64>,
}

/// One `cancel_on(event = "...", match = field)`.
pub struct CancelOnArg {
    /// The name of the event that cancels.
    pub event: LitStr,
    /// The field of the run's event type whose value the cancelling event must
    /// carry, spanned at the user's token (the compiler checks it exists).
    pub field: syn::Ident,
}

#[derive(Default)]
pub struct StepArgs {
    pub id: Option<LitStr>,
    pub retries: Option<u32>,
    pub backoff: Backoff,
}

pub fn parse_function_args(tokens: TokenStream, errors: &mut Errors) -> FunctionArgs {
    let mut args = FunctionArgs::default();
    let keys = [
        "event",
        "id",
        "retries",
        "backoff",
        "on_failure",
        "cancel_on",
        "timeouts",
        "concurrency",
        "run_concurrency",
        "throttle",
        "idempotency",
        "priority",
        "singleton",
        "if",
        "rate_limit",
        "cron",
        "timezone",
        "catch_up",
        "batch_events",
        "debounce",
    ];
    let mut seen = Vec::new();
    let (mut crons, mut timezone, mut catch_up) = (Vec::new(), None, None);
    let parser = syn::meta::parser(|meta| {
        let key = path_name(&meta);
        // `cancel_on`, `concurrency`, `run_concurrency` and `throttle` may be
        // given several times, one rule each; `event` and `cron`, one trigger each.
        if key != "cancel_on"
            && key != "event"
            && key != "cron"
            && key != "concurrency"
            && key != "run_concurrency"
            && key != "throttle"
            && given_twice(&meta, &key, &mut seen, "#[function]", errors)?
        {
            return Ok(());
        }
        match key.as_str() {
            "event" => {
                if let Some(event) = string_value(&meta, errors, "event", "\"app/user.created\"")? {
                    if args.events.iter().any(|e| e.value() == event.value()) {
                        errors.at(
                            &event,
                            format!(
                                "the trigger `event = \"{}\"` is given twice; keep one",
                                event.value()
                            ),
                        );
                    } else {
                        args.events.push(event);
                    }
                }
            }
            "id" => args.id = id_value(&meta, errors)?,
            "retries" => args.retries = retries_value(&meta, errors)?,
            "backoff" => backoff_value(&meta, &mut args.backoff, errors)?,
            "on_failure" => args.on_failure = on_failure_value(&meta, errors)?,
            "timeouts" => timeouts_value(&meta, &mut args.timeouts, errors)?,
            "idempotency" => {
                args.idempotency =
                    cel_value(&meta, errors, "idempotency", "\"event.data.order_id\"")?;
            }
            "priority" => {
                let example = "\"event.data.plan == 'paid' ? 120 : 0\"";
                args.priority = cel_value(&meta, errors, "priority", example)?;
            }
            "singleton" => args.singleton = singleton_value(&meta, errors)?,
            "rate_limit" => args.rate_limit = rate_limit_value(&meta, errors)?,
            "cron" => {
                args.cron_written = true;
                crons.extend(string_value(&meta, errors, "cron", "\"0 9 * * 1\"")?);
            }
            "timezone" => {
                timezone = string_value(&meta, errors, "timezone", "\"Asia/Tokyo\"")?;
            }
            "catch_up" => match value_expr(&meta, errors, "catch_up", "3")? {
                Some(Expr::Lit(ExprLit {
                    lit: Lit::Int(int), ..
                })) if int
                    .base10_parse::<u64>()
                    .is_ok_and(|n| (1..=MAX_CATCH_UP).contains(&n)) =>
                {
                    catch_up = Some((int.base10_parse::<u32>().unwrap_or(0), int.span()));
                }
                Some(other) => errors.at(
                    &other,
                    format!(
                        "`catch_up` is an integer literal from 1 to {MAX_CATCH_UP}: how many of \
                         the ticks missed while no worker was up a starting worker sends (the \
                         last ones); leave it out to skip them"
                    ),
                ),
                None => {}
            },
            "if" => args.filter = cel_value(&meta, errors, "if", "\"event.data.amount > 100\"")?,
            "r#if" | "if_" | "filter" => {
                errors.at(
                    &meta.path,
                    "the filter of a function is `if`: write `if = \"event.data.amount > 100\"`",
                );
                skip_value(&meta)?;
            }
            "cancel_on" => {
                if let Some(cancel) = cancel_on_value(&meta, errors)? {
                    if args.cancel_on.len() == MAX_CANCEL_ON {
                        errors.at(
                            &meta.path,
                            format!(
                                "a function takes at most {MAX_CANCEL_ON} `cancel_on`; \
                                 remove one, or send one event that means all of them"
                            ),
                        );
                    } else if args
                        .cancel_on
                        .iter()
                        .any(|c| c.event.value() == cancel.event.value() && c.field == cancel.field)
                    {
                        errors.at(
                            &meta.path,
                            format!(
                                "`cancel_on(event = \"{}\", match = {})` is given twice; keep one",
                                cancel.event.value(),
                                cancel.field
                            ),
                        );
                    } else {
                        args.cancel_on.push(cancel);
                    }
                }
            }
            "concurrency" | "run_concurrency" => {
                let rules = match key.as_str() {
                    "concurrency" => &mut args.concurrency,
                    _ => &mut args.run_concurrency,
                };
                if let Some(rule) = concurrency_value(&meta, errors, &key)? {
                    if rules.len() == MAX_CONCURRENCY_RULES {
                        errors.at(
                            &meta.path,
                            format!(
                                "a function takes at most {MAX_CONCURRENCY_RULES} `{key}` \
                                 rules; remove one"
                            ),
                        );
                    } else if rules.iter().any(|c| c.identity() == rule.identity()) {
                        errors.at(
                            &meta.path,
                            format!(
                                "this `{key}` rule has the scope and key of another one; keep \
                                 one (the lower limit is the one that holds)"
                            ),
                        );
                    } else {
                        rules.push(rule);
                    }
                }
            }
            "throttle" => {
                if let Some(rule) = throttle_value(&meta, errors)? {
                    if args.throttle.len() == MAX_THROTTLE_RULES {
                        errors.at(
                            &meta.path,
                            format!(
                                "a function takes at most {MAX_THROTTLE_RULES} `throttle` rules; \
                                 remove one"
                            ),
                        );
                    } else {
                        args.throttle.push(rule);
                    }
                }
            }
            "batch_events" | "debounce" => {
                args.grouping_written = true;
                let grouping = match key.as_str() {
                    "batch_events" => batch_value(&meta, errors)?,
                    _ => debounce_value(&meta, errors)?,
                };
                match (&args.grouping, grouping) {
                    (Some(first), Some(_)) => errors.at(
                        &meta.path,
                        format!(
                            "`{key}` and `{}` both gather events into runs; keep one: a batch \
                             starts a run per `max_size` events, a debounce one run per quiet \
                             `period`",
                            first.attribute()
                        ),
                    ),
                    (None, grouping) => args.grouping = grouping,
                    _ => {}
                }
            }
            other => {
                errors.at(&meta.path, unknown_key("#[function]", other, &keys));
                skip_value(&meta)?;
            }
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, tokens) {
        errors.push(e);
    }
    if let (true, Some((_, span))) = (crons.is_empty(), catch_up) {
        errors.at_span(
            span,
            "`catch_up` is for the missed ticks of a `cron` schedule; this function has none",
        );
    }
    if crons.is_empty() {
        // Refuses a `timezone` without a schedule.
        cron_value(None, timezone.clone(), errors);
    }
    for lit in crons {
        if args.crons.iter().any(|c| c.lit.value() == lit.value()) {
            errors.at(&lit, "this `cron` schedule is given twice; keep one");
            continue;
        }
        if let Some(mut cron) = cron_value(Some(lit), timezone.clone(), errors) {
            cron.catch_up = catch_up.map_or(0, |(n, _)| n);
            args.crons.push(cron);
        }
    }
    check_combinations(&args, errors);
    args
}

/// The most fields a schedule has (flow_core::cron::parse_schedule).
const CRON_FIELDS: usize = 5;

/// `cron` and `timezone` checked together: the schedule parses (croner, five
/// fields or a nickname), the zone is an IANA name (chrono-tz), given once.
fn cron_value(
    cron: Option<LitStr>,
    timezone: Option<LitStr>,
    errors: &mut Errors,
) -> Option<CronArg> {
    let Some(lit) = cron else {
        if let Some(timezone) = timezone {
            errors.at(
                &timezone,
                "`timezone` is the zone of a `cron` schedule; this function has none (write \
                 `cron = \"0 9 * * 1\"` beside it, or remove it)",
            );
        }
        return None;
    };
    let text = lit.value();
    let (prefixed, schedule) = match text.trim_start().strip_prefix("TZ=") {
        Some(rest) => match rest.split_once(char::is_whitespace) {
            Some((zone, schedule)) => (Some(zone.to_owned()), schedule.trim().to_owned()),
            None => (Some(rest.to_owned()), String::new()),
        },
        None => (None, text.trim().to_owned()),
    };
    let zone = match (prefixed, &timezone) {
        (Some(_), Some(given)) => {
            errors.at(
                given,
                "the schedule already names its zone with `TZ=`; keep one of the two",
            );
            return None;
        }
        (Some(zone), None) => zone,
        (None, Some(given)) => given.value(),
        (None, None) => "UTC".to_owned(),
    };
    let mut ok = true;
    let fields = schedule.split_whitespace().count();
    if !schedule.starts_with('@') && fields != CRON_FIELDS {
        errors.at(
            &lit,
            format!(
                "`{schedule}` has {fields} fields; a schedule has five: minute, hour, day of \
                 month, month and day of week (as in \"0 9 * * 1\", nine o'clock on Mondays), \
                 or is a nickname such as \"@daily\""
            ),
        );
        ok = false;
    } else if let Err(e) = <croner::Cron as std::str::FromStr>::from_str(&schedule) {
        errors.at(&lit, format!("`{schedule}` is not a cron schedule: {e}"));
        ok = false;
    }
    if zone.parse::<chrono_tz::Tz>().is_err() {
        let message = format!(
            "`{zone}` is not a time zone flow knows; use an IANA name such as \"Asia/Tokyo\", \
             \"Europe/Berlin\" or \"UTC\""
        );
        match &timezone {
            Some(given) => errors.at(given, message),
            None => errors.at(&lit, message),
        }
        ok = false;
    }
    ok.then_some(CronArg {
        lit,
        schedule,
        timezone: zone,
        catch_up: 0,
    })
}

/// Options that cannot work together as written.
fn check_combinations(args: &FunctionArgs, errors: &mut Errors) {
    check_several_triggers(args, errors);
    if let Some(group) = &args.grouping {
        let attribute = group.attribute();
        let mut conflicts: Vec<(&str, &str)> = Vec::new();
        if args.cron_written {
            conflicts.push((
                "cron",
                "a schedule starts one run per tick, with nothing to gather",
            ));
        }
        if args.events.len() > 1 {
            conflicts.push((
                "several `event` triggers",
                "a group gathers the events of one type; write a function per event",
            ));
        }
        if args.singleton.is_some() {
            conflicts.push((
                "singleton",
                "for one active run per key, use `run_concurrency(limit = 1, key = ...)`",
            ));
        }
        if args.priority.is_some() {
            conflicts.push((
                "priority",
                "a grouped run is due when its group closes, not by the priority of one event",
            ));
        }
        if args.idempotency.is_some() {
            conflicts.push((
                "idempotency",
                "an idempotency key belongs to one event's run, and a grouped run has many \
                 events; give the events an `id` to drop duplicates",
            ));
        }
        if group.batch.is_some() {
            if args.rate_limit.is_some() {
                conflicts.push((
                    "rate_limit",
                    "a rate limit skips single events' runs; to pace the batches' runs, use \
                     `throttle`",
                ));
            }
            if !args.cancel_on.is_empty() {
                conflicts.push((
                    "cancel_on",
                    "a cancel matches a field of the run's event, and a batch has many events",
                ));
            }
        }
        for (other, why) in conflicts {
            errors.at_span(
                group.span,
                format!("`{attribute}` cannot be combined with `{other}`: {why}"),
            );
        }
    }
    // Active runs include executing ones: a concurrency limit at or above the
    // run_concurrency limit of the same key never holds anything.
    for rule in &args.concurrency {
        if let Some(active) = args
            .run_concurrency
            .iter()
            .find(|a| a.identity() == rule.identity() && a.limit <= rule.limit)
        {
            let n = active.limit;
            let fix = match n {
                1 => "remove this rule".to_owned(),
                _ => format!("lower this limit below {n} or remove the rule"),
            };
            errors.at_span(
                rule.span,
                format!(
                    "this `concurrency` rule never holds a run: `run_concurrency(limit = {n})` on \
                     the same key and scope already keeps at most {n} run{} active, executing \
                     ones included; {fix}",
                    if n == 1 { "" } else { "s" }
                ),
            );
        }
    }
}

/// The most triggers one function may have (flow_core::MAX_TRIGGERS).
const MAX_TRIGGERS: usize = 10;

/// A function with several triggers takes an enum of their events: what reads a
/// field of "the" event (a `cancel_on` match, an expression's `event.data`, an
/// `on_failure` handler's `FunctionFailed<E>`) has no one type to be checked
/// against, so it is refused.
fn check_several_triggers(args: &FunctionArgs, errors: &mut Errors) {
    let count = args.events.len() + args.crons.len();
    if count > MAX_TRIGGERS {
        let extra = args
            .crons
            .iter()
            .map(|c| c.lit.span())
            .chain(args.events.iter().map(LitStr::span))
            .last()
            .unwrap_or_else(Span::call_site);
        errors.at_span(
            extra,
            format!(
                "a function takes at most {MAX_TRIGGERS} triggers (`event` and `cron`), and this \
                 one has {count}; split it into functions"
            ),
        );
    }
    if args.events.len() + usize::from(!args.crons.is_empty()) < 2 {
        return;
    }
    const WHY: &str = "with several triggers the run's event is one of several types, so \
                       flow cannot check the field against one";
    for cancel in &args.cancel_on {
        errors.at(
            &cancel.event,
            format!(
                "`cancel_on` matches a field of the run's event; {WHY}: write a function per \
                 trigger"
            ),
        );
    }
    if let Some(path) = &args.on_failure {
        errors.at(
            path,
            "an `on_failure` handler takes `FunctionFailed<E>` of the function's one event type; \
             a function with several triggers has none: write a function per trigger",
        );
    }
    let rules = [
        ("idempotency", args.idempotency.as_ref()),
        ("priority", args.priority.as_ref()),
        ("if", args.filter.as_ref()),
        (
            "singleton",
            args.singleton.as_ref().and_then(|s| s.key.as_ref()),
        ),
        (
            "rate_limit",
            args.rate_limit.as_ref().and_then(|r| r.key.as_ref()),
        ),
    ]
    .into_iter()
    .chain(
        args.concurrency
            .iter()
            .map(|c| ("concurrency", c.key.as_ref())),
    )
    .chain(
        args.run_concurrency
            .iter()
            .map(|c| ("run_concurrency", c.key.as_ref())),
    )
    .chain(args.throttle.iter().map(|t| ("throttle", t.key.as_ref())));
    for (what, expr) in rules {
        if let Some(expr) = expr
            && let Some(field) = expr.data_fields.first()
        {
            errors.at(
                &expr.lit,
                format!(
                    "this `{what}` expression reads `event.data.{field}`; {WHY}: write a \
                     function per trigger, or an expression that reads no field"
                ),
            );
        }
    }
}

pub fn parse_step_args(tokens: TokenStream, errors: &mut Errors) -> StepArgs {
    let mut args = StepArgs::default();
    let keys = ["id", "retries", "backoff"];
    let mut seen = Vec::new();
    let parser = syn::meta::parser(|meta| {
        let key = path_name(&meta);
        if given_twice(&meta, &key, &mut seen, "#[step]", errors)? {
            return Ok(());
        }
        match key.as_str() {
            "id" => args.id = id_value(&meta, errors)?,
            "retries" => args.retries = retries_value(&meta, errors)?,
            "backoff" => backoff_value(&meta, &mut args.backoff, errors)?,
            other => {
                errors.at(&meta.path, unknown_key("#[step]", other, &keys));
                skip_value(&meta)?;
            }
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, tokens) {
        errors.push(e);
    }
    args
}

/// Reports a key given a second time, at the second, and skips its value: the
/// first one stands, and rustc would otherwise keep whichever came last silently.
fn given_twice(
    meta: &ParseNestedMeta<'_>,
    key: &str,
    seen: &mut Vec<String>,
    attr: &str,
    errors: &mut Errors,
) -> syn::Result<bool> {
    if !seen.iter().any(|k| k == key) {
        seen.push(key.to_owned());
        return Ok(false);
    }
    errors.at(
        &meta.path,
        format!("`{key}` is given twice in {attr}; keep one of them"),
    );
    skip_value(meta)?;
    Ok(true)
}

fn path_name(meta: &ParseNestedMeta<'_>) -> String {
    meta.path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

fn unknown_key(attr: &str, key: &str, expected: &[&str]) -> String {
    let hint = expected
        .iter()
        .filter(|k| edit_distance(k, key) <= 2)
        .min_by_key(|k| edit_distance(k, key))
        .map(|k| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    format!(
        "unknown key `{key}` in {attr}{hint} (expected one of: {})",
        expected.join(", ")
    )
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<TokenStream>()?;
    }
    Ok(())
}

/// `key = <expr>`; a missing `=` is recorded and yields `None`.
fn value_expr(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
    key: &str,
    example: &str,
) -> syn::Result<Option<Expr>> {
    if !meta.input.peek(syn::Token![=]) {
        errors.at(
            &meta.path,
            format!("`{key}` needs a value: write `{key} = {example}`"),
        );
        skip_value(meta)?;
        return Ok(None);
    }
    Ok(Some(meta.value()?.parse::<Expr>()?))
}

fn string_value(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
    key: &str,
    example: &str,
) -> syn::Result<Option<LitStr>> {
    Ok(match value_expr(meta, errors, key, example)? {
        Some(Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        })) => Some(s),
        Some(other) => {
            errors.at(
                &other,
                format!("`{key}` takes a string literal: write `{key} = {example}`"),
            );
            None
        }
        None => None,
    })
}

/// `key = "<CEL>"`: a string literal, parsed and checked as CEL (`crate::cel`);
/// `None` once the problem is recorded.
fn cel_value(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
    key: &str,
    example: &str,
) -> syn::Result<Option<crate::cel::CheckedExpr>> {
    Ok(string_value(meta, errors, key, example)?
        .and_then(|lit| crate::cel::check(&lit, key, errors)))
}

/// `on_failure = path::to_fn`: a path to an async fn, not a string or a call.
fn on_failure_value(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
) -> syn::Result<Option<syn::Path>> {
    Ok(
        match value_expr(meta, errors, "on_failure", "notify_on_call")? {
            Some(Expr::Path(path)) if path.qself.is_none() => Some(path.path),
            Some(other) => {
                errors.at(
                    &other,
                    "`on_failure` names an async fn, as in `on_failure = notify_on_call`, \
                     taking `(ctx: &Ctx, failed: flow::system::FunctionFailed<YourEvent>)`",
                );
                None
            }
            None => None,
        },
    )
}

/// `cancel_on(event = "app/user.subscribed", match = user_id)`: `match` names a
/// field of the handler's event type (an identifier, or the same in a string).
fn cancel_on_value(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
) -> syn::Result<Option<CancelOnArg>> {
    const EXAMPLE: &str = "`cancel_on(event = \"app/user.subscribed\", match = user_id)`";
    if !meta.input.peek(syn::token::Paren) {
        errors.at(
            &meta.path,
            format!("`cancel_on` takes a list: write {EXAMPLE}"),
        );
        skip_value(meta)?;
        return Ok(None);
    }
    let (mut event, mut field) = (None, None);
    // Whether every key given was right (a wrong one is reported where it is).
    let mut complete = true;
    meta.parse_nested_meta(|inner| {
        let key = path_name(&inner);
        match key.as_str() {
            "event" => {
                event = string_value(&inner, errors, "event", "\"app/user.subscribed\"")?;
                complete &= event.is_some();
                if let Some(name) = &event
                    && let Err(problem) = cancel_event_name(&name.value())
                {
                    errors.at(name, problem);
                    complete = false;
                }
            }
            "match" => {
                field = match_value(&inner, errors)?;
                complete &= field.is_some();
            }
            other => {
                errors.at(
                    &inner.path,
                    unknown_key("cancel_on(...)", other, &["event", "match"]),
                );
                skip_value(&inner)?;
                complete = false;
            }
        }
        Ok(())
    })?;
    if !complete {
        return Ok(None);
    }
    match (event, field) {
        (Some(event), Some(field)) => Ok(Some(CancelOnArg { event, field })),
        (None, _) => {
            errors.at(
                &meta.path,
                format!("`cancel_on` needs the event's name: write {EXAMPLE}"),
            );
            Ok(None)
        }
        (_, None) => {
            errors.at(
                &meta.path,
                format!("`cancel_on` needs the field both events must have equal: write {EXAMPLE}"),
            );
            Ok(None)
        }
    }
}

/// The longest timeout (366 days, as for waits: flow_core::MAX_WAIT).
const MAX_TIMEOUT_MS: u64 = 366 * 86_400_000;

/// `concurrency = 5`, or `concurrency(limit = 5, key = "<CEL>", scope = fn |
/// shared("name"))` with `limit` required; `run_concurrency` alike (`attr`).
fn concurrency_value(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
    attr: &str,
) -> syn::Result<Option<ConcurrencyArg>> {
    let example = match attr {
        "concurrency" => {
            "`concurrency(limit = 5, key = \"event.data.customer_id\")` (five runs executing \
             steps at once per customer) or `concurrency = 5`"
        }
        _ => {
            "`run_concurrency(limit = 1, key = \"event.data.customer_id\")` (one run started \
             and not ended per customer, sleeping and waiting ones included) or \
             `run_concurrency = 1`"
        }
    };
    if meta.input.peek(syn::Token![=]) {
        let Some(expr) = value_expr(meta, errors, attr, "5")? else {
            return Ok(None);
        };
        return Ok(
            concurrency_limit(&expr, errors).map(|limit| ConcurrencyArg {
                span: meta.path.span(),
                limit,
                key: None,
                shared: None,
            }),
        );
    }
    if !meta.input.peek(syn::token::Paren) {
        errors.at(
            &meta.path,
            format!("`{attr}` needs a limit: write {example}"),
        );
        return Ok(None);
    }
    let (mut limit, mut key, mut shared) = (None, None, None);
    let (mut seen, mut bad) = (Vec::new(), false);
    let within = format!("{attr}(...)");
    meta.parse_nested_meta(|inner| {
        let name = path_name(&inner);
        if given_twice(&inner, &name, &mut seen, &within, errors)? {
            bad = true;
            return Ok(());
        }
        match name.as_str() {
            "limit" => {
                limit = limit_value(&inner, errors, "5")?;
                bad |= limit.is_none();
            }
            "key" => {
                key = cel_value(&inner, errors, "key", "\"event.data.customer_id\"")?;
                bad |= key.is_none();
            }
            "scope" => match scope_value(&inner, errors)? {
                Ok(scope) => shared = scope,
                Err(()) => bad = true,
            },
            other => {
                errors.at(
                    &inner.path,
                    unknown_key(&within, other, &["limit", "key", "scope"]),
                );
                bad = true;
                skip_value(&inner)?;
            }
        }
        Ok(())
    })?;
    if limit.is_none() && !bad {
        errors.at(
            &meta.path,
            format!("`{attr}` needs a `limit`: write {example}"),
        );
    }
    Ok(match (limit, bad) {
        (Some(limit), false) => Some(ConcurrencyArg {
            span: meta.path.span(),
            limit,
            key,
            shared,
        }),
        _ => None,
    })
}

/// `throttle(limit = 10, period = "1m", burst = 2, key = "<CEL>", scope = fn |
/// shared("name"))`, `limit` and `period` required.
fn throttle_value(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
) -> syn::Result<Option<ThrottleArg>> {
    const EXAMPLE: &str = "`throttle(limit = 10, period = \"1m\")` (ten run starts a minute, \
                           spread evenly; add `burst = 5` to start up to fifteen at once, \
                           `key = \"event.data.customer_id\"` for a throttle per key)";
    if !meta.input.peek(syn::token::Paren) {
        errors.at(
            &meta.path,
            format!("`throttle` needs a limit and a period: write {EXAMPLE}"),
        );
        skip_value(meta)?;
        return Ok(None);
    }
    let (mut limit, mut period, mut burst, mut key, mut shared) = (None, None, 0, None, None);
    let (mut seen, mut bad) = (Vec::new(), false);
    meta.parse_nested_meta(|inner| {
        let name = path_name(&inner);
        if given_twice(&inner, &name, &mut seen, "throttle(...)", errors)? {
            bad = true;
            return Ok(());
        }
        match name.as_str() {
            "limit" => {
                limit = limit_value(&inner, errors, "10")?;
                bad |= limit.is_none();
            }
            "burst" => match value_expr(&inner, errors, "burst", "5")? {
                Some(Expr::Lit(ExprLit {
                    lit: Lit::Int(int), ..
                })) if int
                    .base10_parse::<u64>()
                    .is_ok_and(|n| n <= MAX_CONCURRENCY_LIMIT) =>
                {
                    burst = int.base10_parse::<u32>().unwrap_or(0);
                }
                Some(other) => {
                    errors.at(
                        &other,
                        format!(
                            "`burst` is an integer literal from 0 to {MAX_CONCURRENCY_LIMIT}: the \
                             starts allowed at once beyond `limit`"
                        ),
                    );
                    bad = true;
                }
                None => bad = true,
            },
            "period" => {
                period = period_value(&inner, errors, "a throttle's", 1)?;
                bad |= period.is_none();
            }
            "key" => {
                key = cel_value(&inner, errors, "key", "\"event.data.customer_id\"")?;
                bad |= key.is_none();
            }
            "scope" => match scope_value(&inner, errors)? {
                Ok(scope) => shared = scope,
                Err(()) => bad = true,
            },
            other => {
                errors.at(
                    &inner.path,
                    unknown_key(
                        "throttle(...)",
                        other,
                        &["limit", "period", "burst", "key", "scope"],
                    ),
                );
                bad = true;
                skip_value(&inner)?;
            }
        }
        Ok(())
    })?;
    if (limit.is_none() || period.is_none()) && !bad {
        errors.at(
            &meta.path,
            format!("`throttle` needs a `limit` and a `period`: write {EXAMPLE}"),
        );
    }
    Ok(match (limit, period, bad) {
        (Some(limit), Some(period), false) => Some(ThrottleArg {
            limit,
            period,
            burst,
            key,
            shared,
        }),
        _ => None,
    })
}

/// A rule's `period = "1m"`, in milliseconds: at least `least_ms`, at most 366
/// days; `None` with the error recorded (`whose`: "a throttle's").
fn period_value(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
    whose: &str,
    least_ms: u64,
) -> syn::Result<Option<u64>> {
    let Some(lit) = string_value(meta, errors, "period", "\"1m\"")? else {
        return Ok(None);
    };
    Ok(match parse_duration(&lit.value()) {
        Ok(ms) if ms < least_ms && least_ms <= 1 => {
            errors.at(&lit, format!("{whose} `period` must be longer than zero"));
            None
        }
        Ok(ms) if ms < least_ms => {
            let least = match least_ms % 1_000 {
                0 => format!("{}s", least_ms / 1_000),
                _ => format!("{least_ms}ms"),
            };
            errors.at(&lit, format!("{whose} `period` is at least {least}"));
            None
        }
        Ok(ms) if ms > MAX_TIMEOUT_MS => {
            errors.at(&lit, format!("{whose} `period` is at most 366 days"));
            None
        }
        Ok(ms) => Some(ms),
        Err(problem) => {
            errors.at(&lit, format!("`period`: {problem}"));
            None
        }
    })
}

/// `rate_limit(limit = 1, period = "4h", key = "<CEL>")`, `limit` and `period`
/// required.
fn rate_limit_value(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
) -> syn::Result<Option<RateLimitArg>> {
    const EXAMPLE: &str = "`rate_limit(limit = 1, period = \"4h\", key = \"event.data.user_id\")` \
                           (one run per user per four hours; the events over it start nothing \
                           and their runs are recorded as skipped)";
    if !meta.input.peek(syn::token::Paren) {
        errors.at(
            &meta.path,
            format!("`rate_limit` needs a limit and a period: write {EXAMPLE}"),
        );
        skip_value(meta)?;
        return Ok(None);
    }
    let (mut limit, mut period, mut key) = (None, None, None);
    let (mut seen, mut bad) = (Vec::new(), false);
    meta.parse_nested_meta(|inner| {
        let name = path_name(&inner);
        if given_twice(&inner, &name, &mut seen, "rate_limit(...)", errors)? {
            bad = true;
            return Ok(());
        }
        match name.as_str() {
            "limit" => {
                limit = limit_value(&inner, errors, "1")?;
                bad |= limit.is_none();
            }
            "period" => {
                period = period_value(&inner, errors, "a rate limit's", 1_000)?;
                bad |= period.is_none();
            }
            "key" => {
                key = cel_value(&inner, errors, "key", "\"event.data.user_id\"")?;
                bad |= key.is_none();
            }
            "burst" => {
                errors.at(
                    &inner.path,
                    "a rate limit has no `burst`: `limit` runs start at once after a quiet \
                     `period`; to queue the runs over a limit instead of skipping them, use \
                     `throttle(limit, period, burst)`",
                );
                bad = true;
                skip_value(&inner)?;
            }
            other => {
                errors.at(
                    &inner.path,
                    unknown_key("rate_limit(...)", other, &["limit", "period", "key"]),
                );
                bad = true;
                skip_value(&inner)?;
            }
        }
        Ok(())
    })?;
    if (limit.is_none() || period.is_none()) && !bad {
        errors.at(
            &meta.path,
            format!("`rate_limit` needs a `limit` and a `period`: write {EXAMPLE}"),
        );
    }
    Ok(match (limit, period, bad) {
        (Some(limit), Some(period), false) => Some(RateLimitArg { limit, period, key }),
        _ => None,
    })
}

/// A group's `period` or `timeout` (`what`), in milliseconds: 1 second to 7
/// days; `None` with the error recorded.
fn group_wait_value(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
    what: &str,
    example: &str,
) -> syn::Result<Option<u64>> {
    let Some(lit) = string_value(meta, errors, what, example)? else {
        return Ok(None);
    };
    Ok(match parse_duration(&lit.value()) {
        Ok(ms) if (1_000..=MAX_GROUP_WAIT_MS).contains(&ms) => Some(ms),
        Ok(_) => {
            errors.at(&lit, format!("`{what}` is 1 second to 7 days"));
            None
        }
        Err(problem) => {
            errors.at(&lit, format!("`{what}`: {problem}"));
            None
        }
    })
}

/// `batch_events(max_size = 100, timeout = "5s", key = "<CEL>")`, `max_size` and
/// `timeout` required.
fn batch_value(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
) -> syn::Result<Option<GroupingArg>> {
    const EXAMPLE: &str = "`batch_events(max_size = 100, timeout = \"5s\", key = \"event.data.user_id\")` \
                           (a run per 100 events of a user, or fewer once the first has waited \
                           5 seconds; the handler takes `Vec<E>`)";
    if !meta.input.peek(syn::token::Paren) {
        errors.at(
            &meta.path,
            format!("`batch_events` needs a `max_size` and a `timeout`: write {EXAMPLE}"),
        );
        skip_value(meta)?;
        return Ok(None);
    }
    let (mut max_size, mut timeout, mut key) = (None, None, None);
    let (mut seen, mut bad) = (Vec::new(), false);
    meta.parse_nested_meta(|inner| {
        let name = path_name(&inner);
        if given_twice(&inner, &name, &mut seen, "batch_events(...)", errors)? {
            bad = true;
            return Ok(());
        }
        match name.as_str() {
            "max_size" => {
                max_size = match value_expr(&inner, errors, "max_size", "100")? {
                    Some(Expr::Lit(ExprLit {
                        lit: Lit::Int(int), ..
                    })) if int
                        .base10_parse::<u64>()
                        .is_ok_and(|n| (1..=MAX_BATCH_SIZE).contains(&n)) =>
                    {
                        int.base10_parse::<u32>().ok()
                    }
                    Some(other) => {
                        errors.at(
                            &other,
                            format!(
                                "`max_size` is an integer literal from 1 to {MAX_BATCH_SIZE}: \
                                 the most events one run takes"
                            ),
                        );
                        None
                    }
                    None => None,
                };
                bad |= max_size.is_none();
            }
            "timeout" => {
                timeout = group_wait_value(&inner, errors, "timeout", "\"5s\"")?;
                bad |= timeout.is_none();
            }
            "key" => {
                key = cel_value(&inner, errors, "key", "\"event.data.user_id\"")?;
                bad |= key.is_none();
            }
            other => {
                let hint = match other {
                    "size" | "max" | "max_events" => Some("max_size"),
                    "period" | "wait" => Some("timeout"),
                    _ => None,
                };
                match hint {
                    Some(hint) => errors.at(
                        &inner.path,
                        format!("`batch_events` has no `{other}`; did you mean `{hint}`? write {EXAMPLE}"),
                    ),
                    None => errors.at(
                        &inner.path,
                        unknown_key("batch_events(...)", other, &["max_size", "timeout", "key"]),
                    ),
                }
                bad = true;
                skip_value(&inner)?;
            }
        }
        Ok(())
    })?;
    if (max_size.is_none() || timeout.is_none()) && !bad {
        errors.at(
            &meta.path,
            format!("`batch_events` needs a `max_size` and a `timeout`: write {EXAMPLE}"),
        );
    }
    Ok(match (max_size, timeout, bad) {
        (Some(max_size), Some(timeout), false) => Some(GroupingArg {
            span: meta.path.span(),
            batch: Some(max_size),
            period: None,
            timeout: Some(timeout),
            key,
            all: true,
        }),
        _ => None,
    })
}

/// `debounce(period = "5m", key = "<CEL>", timeout = "1h", events = last | all)`,
/// `period` required; `timeout` no shorter than `period`.
fn debounce_value(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
) -> syn::Result<Option<GroupingArg>> {
    const EXAMPLE: &str = "`debounce(period = \"5m\", key = \"event.data.doc_id\", timeout = \"1h\")` \
                           (one run per document once its events pause for 5 minutes, and at \
                           least one an hour while they do not)";
    if !meta.input.peek(syn::token::Paren) {
        errors.at(
            &meta.path,
            format!("`debounce` needs a `period`: write {EXAMPLE}"),
        );
        skip_value(meta)?;
        return Ok(None);
    }
    let (mut period, mut timeout, mut key, mut all) = (None, None, None, false);
    let (mut seen, mut bad) = (Vec::new(), false);
    meta.parse_nested_meta(|inner| {
        let name = path_name(&inner);
        if given_twice(&inner, &name, &mut seen, "debounce(...)", errors)? {
            bad = true;
            return Ok(());
        }
        match name.as_str() {
            "period" => {
                period = group_wait_value(&inner, errors, "period", "\"5m\"")?;
                bad |= period.is_none();
            }
            "timeout" => {
                timeout = group_wait_value(&inner, errors, "timeout", "\"1h\"")?;
                bad |= timeout.is_none();
            }
            "key" => {
                key = cel_value(&inner, errors, "key", "\"event.data.doc_id\"")?;
                bad |= key.is_none();
            }
            "events" => match value_expr(&inner, errors, "events", "all")? {
                Some(Expr::Path(path)) if path.path.is_ident("all") => all = true,
                Some(Expr::Path(path)) if path.path.is_ident("last") => all = false,
                Some(other) => {
                    errors.at(
                        &other,
                        "`events` is `last` (the handler takes the window's last event, the \
                         default) or `all` (it takes every event of the window, as `Vec<E>`)",
                    );
                    bad = true;
                }
                None => bad = true,
            },
            other => {
                errors.at(
                    &inner.path,
                    unknown_key(
                        "debounce(...)",
                        other,
                        &["period", "key", "timeout", "events"],
                    ),
                );
                bad = true;
                skip_value(&inner)?;
            }
        }
        Ok(())
    })?;
    if let (Some(p), Some(t)) = (period, timeout)
        && t < p
    {
        errors.at(
            &meta.path,
            "a debounce's `timeout` caps how long its window stays open, so it is no shorter \
             than its `period`; lengthen it, or leave it out",
        );
        bad = true;
    }
    if period.is_none() && !bad {
        errors.at(
            &meta.path,
            format!("`debounce` needs a `period`: write {EXAMPLE}"),
        );
    }
    Ok(match (period, bad) {
        (Some(period), false) => Some(GroupingArg {
            span: meta.path.span(),
            batch: None,
            period: Some(period),
            timeout,
            key,
            all,
        }),
        _ => None,
    })
}

/// `singleton(key = "<CEL>", mode = skip | cancel)`, `mode` required.
fn singleton_value(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
) -> syn::Result<Option<SingletonArg>> {
    const EXAMPLE: &str = "`singleton(key = \"event.data.user_id\", mode = skip)` (skip: \
                           an event starts nothing while a run of its key is active; cancel: \
                           it cancels that run and starts its own)";
    if !meta.input.peek(syn::token::Paren) {
        errors.at(
            &meta.path,
            format!("`singleton` needs a mode: write {EXAMPLE}"),
        );
        skip_value(meta)?;
        return Ok(None);
    }
    let (mut key, mut mode) = (None, None);
    let (mut seen, mut bad) = (Vec::new(), false);
    meta.parse_nested_meta(|inner| {
        let name = path_name(&inner);
        if given_twice(&inner, &name, &mut seen, "singleton(...)", errors)? {
            bad = true;
            return Ok(());
        }
        match name.as_str() {
            "key" => {
                key = cel_value(&inner, errors, "key", "\"event.data.user_id\"")?;
                bad |= key.is_none();
            }
            "mode" => match value_expr(&inner, errors, "mode", "skip")? {
                Some(Expr::Path(p)) if p.path.is_ident("skip") => mode = Some(false),
                Some(Expr::Path(p)) if p.path.is_ident("cancel") => mode = Some(true),
                Some(other) => {
                    errors.at(
                        &other,
                        "`mode` is `skip` (an event starts nothing while a run of its key is \
                         active) or `cancel` (it cancels that run and starts its own)",
                    );
                    bad = true;
                }
                None => bad = true,
            },
            other => {
                errors.at(
                    &inner.path,
                    unknown_key("singleton(...)", other, &["key", "mode"]),
                );
                bad = true;
                skip_value(&inner)?;
            }
        }
        Ok(())
    })?;
    if mode.is_none() && !bad {
        errors.at(
            &meta.path,
            format!("`singleton` needs a `mode`: write {EXAMPLE}"),
        );
    }
    Ok(match (mode, bad) {
        (Some(cancel), false) => Some(SingletonArg { key, cancel }),
        _ => None,
    })
}

/// A rule's `limit = N` (`example`: the N the message suggests), checked by
/// [`concurrency_limit`]; `None` with the error recorded.
fn limit_value(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
    example: &str,
) -> syn::Result<Option<u32>> {
    Ok(value_expr(meta, errors, "limit", example)?
        .and_then(|expr| concurrency_limit(&expr, errors)))
}

/// A concurrency limit: an integer literal from 1 to the maximum.
fn concurrency_limit(expr: &Expr, errors: &mut Errors) -> Option<u32> {
    let problem = match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<u64>() {
            Ok(0) => "a limit of 0 would never run anything; the least is 1".to_owned(),
            Ok(n) if n <= MAX_CONCURRENCY_LIMIT => return Some(n as u32),
            _ => format!("the highest concurrency limit is {MAX_CONCURRENCY_LIMIT}"),
        },
        _ => "a concurrency limit is an integer literal, as in `limit = 5`".to_owned(),
    };
    errors.at(expr, problem);
    None
}

/// `scope = fn` (the function's own runs, the default) or `scope = shared("name")`.
fn scope_value(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
) -> syn::Result<Result<Option<LitStr>, ()>> {
    const HELP: &str = "`scope` is `fn` (this function's runs, the default) or \
                        `shared(\"name\")` (the runs of every function that names it)";
    if !meta.input.peek(syn::Token![=]) {
        errors.at(&meta.path, HELP);
        skip_value(meta)?;
        return Ok(Err(()));
    }
    let value = meta.value()?;
    if value.peek(syn::Token![fn]) {
        value.parse::<syn::Token![fn]>()?;
        return Ok(Ok(None));
    }
    let expr: Expr = value.parse()?;
    if let Expr::Call(call) = &expr
        && call.func.to_token_stream().to_string() == "shared"
        && call.args.len() == 1
        && let Some(Expr::Lit(ExprLit {
            lit: Lit::Str(name),
            ..
        })) = call.args.first()
    {
        let text = name.value();
        let bad = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_./:".contains(*c)));
        if text.is_empty() || text.len() > 128 {
            errors.at(name, "a shared scope's name is 1 to 128 bytes long");
            return Ok(Err(()));
        }
        if let Some(c) = bad {
            errors.at(
                name,
                format!(
                    "a shared scope's name has `{}`; use letters, digits and `-_./:`",
                    c.escape_default()
                ),
            );
            return Ok(Err(()));
        }
        return Ok(Ok(Some(name.clone())));
    }
    errors.at(&expr, HELP);
    Ok(Err(()))
}

/// `timeouts(start = "10m", finish = "1h")`: either or both.
fn timeouts_value(
    meta: &ParseNestedMeta<'_>,
    timeouts: &mut Timeouts,
    errors: &mut Errors,
) -> syn::Result<()> {
    const EXAMPLE: &str = "`timeouts(start = \"10m\", finish = \"1h\")`";
    if !meta.input.peek(syn::token::Paren) {
        errors.at(
            &meta.path,
            format!("`timeouts` takes a list: write {EXAMPLE}"),
        );
        return skip_value(meta);
    }
    let mut given = false;
    meta.parse_nested_meta(|inner| {
        let key = path_name(&inner);
        let slot = match key.as_str() {
            "start" => &mut timeouts.start,
            "finish" => &mut timeouts.finish,
            other => {
                errors.at(
                    &inner.path,
                    unknown_key("timeouts(...)", other, &["start", "finish"]),
                );
                given = true;
                return skip_value(&inner);
            }
        };
        given = true;
        if slot.is_some() {
            errors.at(
                &inner.path,
                format!("`{key}` is given twice in timeouts(...); keep one"),
            );
            return skip_value(&inner);
        }
        if let Some(lit) = string_value(&inner, errors, &key, "\"10m\"")? {
            match parse_duration(&lit.value()) {
                Ok(ms) if ms > MAX_TIMEOUT_MS => errors.at(
                    &lit,
                    format!("`{key}` is longer than 366 days, the longest a run may be held"),
                ),
                Ok(ms) => *slot = Some(ms),
                Err(problem) => errors.at(&lit, format!("`{key}`: {problem}")),
            }
        }
        Ok(())
    })?;
    if !given {
        errors.at(
            &meta.path,
            format!("`timeouts` is empty: write {EXAMPLE}, or leave it out"),
        );
    }
    Ok(())
}

/// `match = user_id` or `match = "user_id"`: a field of the handler's event type,
/// as an identifier spanned at the user's token.
fn match_value(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Option<syn::Ident>> {
    let help = "`match` names a field of the function's event type, as its struct declares \
                it: write `match = user_id`";
    Ok(match value_expr(meta, errors, "match", "user_id")? {
        Some(Expr::Path(path)) if path.qself.is_none() && path.path.get_ident().is_some() => {
            path.path.get_ident().cloned()
        }
        Some(Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        })) => match syn::parse_str::<syn::Ident>(&s.value()) {
            Ok(ident) => Some(syn::Ident::new(&ident.to_string(), s.span())),
            Err(_) => {
                errors.at(&s, format!("`{}` is not a field name; {help}", s.value()));
                None
            }
        },
        Some(other) => {
            errors.at(&other, help);
            None
        }
        None => None,
    })
}

/// The name a `cancel_on` waits for: a name an application may send (as
/// `#[derive(Event)]` checks them), not one of flow's own, which sends never
/// carry and so could never cancel anything.
fn cancel_event_name(name: &str) -> Result<(), String> {
    if let Some(problem) = crate::event::name_problem(name) {
        Err(problem)
    } else if name.starts_with("flow/") {
        Err(format!(
            "`{name}` is one of flow's own events, which never cancel a run (`cancel_on` \
             matches the events applications send); name an event your application sends"
        ))
    } else {
        Ok(())
    }
}

fn id_value(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Option<LitStr>> {
    let id = string_value(meta, errors, "id", "\"my-id\"")?;
    if let Some(id) = &id {
        let value = id.value();
        if value.is_empty() {
            errors.at(id, "`id` cannot be empty");
        } else if value.contains(':') {
            errors.at(
                id,
                "`id` cannot contain `:`, which flow uses to number repeated step calls (`id:1`)",
            );
        } else if value.chars().any(char::is_whitespace) {
            errors.at(id, "`id` cannot contain whitespace; use `-` or `_`");
        }
    }
    Ok(id)
}

fn retries_value(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Option<u32>> {
    Ok(match value_expr(meta, errors, "retries", "3")? {
        Some(Expr::Lit(ExprLit {
            lit: Lit::Int(n), ..
        })) => match n.base10_parse::<u64>() {
            Ok(v) if v <= MAX_RETRIES => Some(v as u32),
            _ => {
                errors.at(
                    &n,
                    format!("`retries` must be between 0 and {MAX_RETRIES}; got {n}"),
                );
                None
            }
        },
        Some(other) => {
            errors.at(
                &other,
                format!("`retries` takes an integer from 0 to {MAX_RETRIES}: write `retries = 3`"),
            );
            None
        }
        None => None,
    })
}

fn backoff_value(
    meta: &ParseNestedMeta<'_>,
    backoff: &mut Backoff,
    errors: &mut Errors,
) -> syn::Result<()> {
    if !meta.input.peek(syn::token::Paren) {
        errors.at(
            &meta.path,
            "`backoff` takes a list: write `backoff(initial = \"1s\", max = \"10m\", factor = 2.0, jitter = 0.2)`",
        );
        return skip_value(meta);
    }
    let keys = ["initial", "max", "factor", "jitter"];
    meta.parse_nested_meta(|inner| {
        let key = path_name(&inner);
        match key.as_str() {
            "initial" | "max" => {
                let lit = string_value(&inner, errors, &key, "\"500ms\"")?;
                if let Some(lit) = lit {
                    match parse_duration(&lit.value()) {
                        Ok(ms) => {
                            let slot = if key == "initial" { &mut backoff.initial } else { &mut backoff.max };
                            *slot = Some((ms, lit.span()));
                        }
                        Err(problem) => errors.at(&lit, format!("`{key}`: {problem}")),
                    }
                }
            }
            "factor" | "jitter" => {
                let value = match value_expr(&inner, errors, &key, "2.0")? {
                    Some(Expr::Lit(ExprLit { lit: Lit::Float(f), .. })) => f.base10_parse::<f64>().ok().map(|v| (v, f.span())),
                    Some(Expr::Lit(ExprLit { lit: Lit::Int(i), .. })) => i.base10_parse::<f64>().ok().map(|v| (v, i.span())),
                    Some(other) => {
                        errors.at(&other, format!("`{key}` takes a number: write `{key} = 2.0`"));
                        None
                    }
                    None => None,
                };
                if let Some((v, span)) = value {
                    if key == "factor" {
                        if v < 1.0 {
                            errors.at_span(span, "`factor` must be at least 1.0 (each wait at least as long as the previous)");
                        } else {
                            backoff.factor = Some(v);
                        }
                    } else if !(0.0..=1.0).contains(&v) {
                        errors.at_span(span, "`jitter` is a share of the wait: between 0.0 and 1.0");
                    } else {
                        backoff.jitter = Some(v);
                    }
                }
            }
            other => {
                errors.at(&inner.path, unknown_key("backoff(...)", other, &keys));
                skip_value(&inner)?;
            }
        }
        Ok(())
    })?;
    if let (Some((initial, _)), Some((max, span))) = (backoff.initial, backoff.max)
        && max < initial
    {
        errors.at_span(
            span,
            "`max` is shorter than `initial`; the longest wait cannot be shorter than the first",
        );
    }
    Ok(())
}

/// `"250ms"`, `"30s"`, `"10m"`, `"2h"`, `"1d"` → milliseconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let help = "write a whole number and a unit: \"250ms\", \"30s\", \"10m\", \"2h\" or \"1d\"";
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; {help}"))?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("`{text}` has no known unit; {help}")),
    };
    if n == 0 {
        return Err(format!("`{text}` is zero; a wait must be at least \"1ms\""));
    }
    n.checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_refuse_the_rest() {
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("10m"), Ok(600_000));
        assert_eq!(parse_duration("1d"), Ok(86_400_000));
        assert!(parse_duration("5").unwrap_err().contains("no known unit"));
        assert!(parse_duration("s").unwrap_err().contains("not a duration"));
        assert!(parse_duration("0s").unwrap_err().contains("zero"));
    }

    #[test]
    fn typos_get_a_suggestion() {
        assert!(
            unknown_key("#[function]", "retires", &["event", "retries"])
                .contains("did you mean `retries`")
        );
        assert!(!unknown_key("#[function]", "zzz", &["event", "retries"]).contains("did you mean"));
    }
}
