//! Cron triggers: `#[function(cron = "0 9 * * 1", timezone = "Asia/Tokyo")]`.
//!
//! Every worker serving a cron function computes its schedule's next tick in the
//! function's zone, sleeps until then (on the worker's clock), and sends the
//! tick as an event named after the function (`flow/cron.<id>`), with a producer
//! id naming the function and the tick: the store keeps the first of the
//! workers' sends of a tick and drops the others, so each tick starts exactly one
//! run however many workers are up. Ticks that pass while no worker is up are
//! skipped, or, with `catch_up = N`, the last N of them are sent when a worker
//! starts (after the function's last stored tick).
//!
//! Daylight saving time, as croner evaluates a schedule in a zone: a local time
//! that a spring-forward skips fires when the clocks jump (02:30 on the night
//! New York goes from 02:00 to 03:00 fires at 03:00); a local time that a
//! fall-back repeats fires once, at its first occurrence.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The prefix of a cron function's trigger: `flow/cron.<function id>`.
pub const CRON_TRIGGER_PREFIX: &str = "flow/cron.";

/// `#[function(cron = "...", timezone = "...")]` as declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cron {
    /// Five fields (minute, hour, day of month, month, day of week) or a
    /// nickname (`@daily`), without a `TZ=` prefix.
    pub schedule: &'static str,
    /// An IANA zone name (`Asia/Tokyo`); `UTC` unless given.
    pub timezone: &'static str,
    /// How many of the ticks missed while no worker was up a starting worker
    /// sends (the last ones); 0 skips them.
    pub catch_up: u32,
}

/// The most missed ticks `catch_up` may send.
pub const MAX_CATCH_UP: u32 = 100;

/// How late after its time a worker still sends a tick; a worker that wakes
/// later (suspended, cut off, or a test clock that jumped) counts it missed.
/// Every send of a tick so falls within the store's 24-hour producer-id window
/// of the first, and the store keeps one.
pub const TICK_SEND_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(12);

/// What a cron function receives: the tick that started its run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronTick {
    /// The time the tick was scheduled for (the run may start a little later).
    pub scheduled: DateTime<Utc>,
    /// The schedule, as declared.
    pub schedule: String,
    /// The zone the schedule is read in.
    pub timezone: String,
}

impl crate::Event for CronTick {
    /// Each cron function's ticks are named after it (`flow/cron.<id>`); this is
    /// the name they share.
    const NAME: &'static str = "flow/cron";
}

/// What `#[function(cron = ...)]` requires of its handler's event parameter.
#[diagnostic::on_unimplemented(
    message = "a cron function receives `flow::CronTick`, not `{Self}`",
    label = "write `tick: flow::CronTick` here",
    note = "a function triggered by `cron` starts from a schedule's tick, not from an event"
)]
pub trait IsCronTick {}

impl IsCronTick for CronTick {}

/// A schedule ready to compute ticks.
#[derive(Debug)]
pub struct Schedule {
    cron: croner::Cron,
    zone: chrono_tz::Tz,
}

impl Schedule {
    /// Parses a schedule and its zone; the error says what is wrong with either
    /// (the macro reports the same at compile time).
    pub fn parse(schedule: &str, timezone: &str) -> Result<Schedule, String> {
        Ok(Schedule {
            cron: parse_schedule(schedule)?,
            zone: parse_zone(timezone)?,
        })
    }

    /// The last `n` ticks after `last` up to `until` (inclusive), oldest first:
    /// the ticks a worker starting at `until` catches up. Looks at a million
    /// ticks at most (two years of a minutely schedule).
    pub fn missed(&self, last: DateTime<Utc>, until: DateTime<Utc>, n: u32) -> Vec<DateTime<Utc>> {
        let mut missed = std::collections::VecDeque::new();
        let mut after = last;
        for _ in 0..1_000_000 {
            match self.next_after(after) {
                Some(tick) if tick <= until => {
                    if missed.len() == n as usize {
                        missed.pop_front();
                    }
                    missed.push_back(tick);
                    after = tick;
                }
                _ => break,
            }
        }
        missed.into()
    }

    /// The first tick strictly after `after`; `None` for a schedule that never
    /// fires again (the 30th of February).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.zone), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// A cron schedule of five fields or a nickname (`@hourly`, `@daily`,
/// `@weekly`, `@monthly`, `@yearly`); a sixth field (seconds) is refused: ticks
/// are a minute apart at least.
pub fn parse_schedule(schedule: &str) -> Result<croner::Cron, String> {
    let fields = schedule.split_whitespace().count();
    if !schedule.trim_start().starts_with('@') && fields != 5 {
        return Err(format!(
            "`{schedule}` has {fields} fields; a schedule has five: minute, hour, day of \
             month, month and day of week (as in \"0 9 * * 1\", nine o'clock on Mondays)"
        ));
    }
    croner::Cron::from_str(schedule).map_err(|e| format!("`{schedule}` is not a schedule: {e}"))
}

/// An IANA zone name.
pub fn parse_zone(timezone: &str) -> Result<chrono_tz::Tz, String> {
    timezone.parse::<chrono_tz::Tz>().map_err(|_| {
        format!(
            "`{timezone}` is not a time zone flow knows; use an IANA name such as \
             \"Asia/Tokyo\", \"Europe/Berlin\" or \"UTC\""
        )
    })
}

/// The producer id of a tick: the store keeps one event per id, so one run per
/// tick whichever workers send it.
pub fn tick_producer_id(function: &str, tick: DateTime<Utc>) -> String {
    format!("{CRON_TRIGGER_PREFIX}{function}@{}", tick.to_rfc3339())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("a time")
    }

    #[test]
    fn ticks_follow_the_zone_and_its_daylight_saving_changes() {
        let mondays = Schedule::parse("0 9 * * 1", "Asia/Tokyo").expect("parses");
        // Nine in Tokyo is midnight UTC.
        assert_eq!(
            mondays.next_after(at("2026-03-04T00:00:00Z")),
            Some(at("2026-03-09T00:00:00Z"))
        );
        let nightly = Schedule::parse("30 2 * * *", "America/New_York").expect("parses");
        // 02:30 does not exist on 8 March 2026 in New York: it fires at 03:00 EDT.
        assert_eq!(
            nightly.next_after(at("2026-03-07T12:00:00Z")),
            Some(at("2026-03-08T07:00:00Z"))
        );
        assert_eq!(
            nightly.next_after(at("2026-03-08T07:00:00Z")),
            Some(at("2026-03-09T06:30:00Z"))
        );
        let early = Schedule::parse("30 1 * * *", "America/New_York").expect("parses");
        // 01:30 happens twice on 1 November 2026: it fires once, the first time.
        assert_eq!(
            early.next_after(at("2026-10-31T12:00:00Z")),
            Some(at("2026-11-01T05:30:00Z"))
        );
        assert_eq!(
            early.next_after(at("2026-11-01T05:30:00Z")),
            Some(at("2026-11-02T06:30:00Z"))
        );
    }

    #[test]
    fn missed_ticks_are_the_last_n_after_the_last_one_sent() {
        let hourly = Schedule::parse("0 * * * *", "UTC").expect("parses");
        let last = at("2026-03-01T09:00:00Z");
        assert_eq!(
            hourly.missed(last, at("2026-03-01T13:30:00Z"), 2),
            [at("2026-03-01T12:00:00Z"), at("2026-03-01T13:00:00Z")]
        );
        // A tick at the start itself counts as missed.
        assert_eq!(
            hourly.missed(last, at("2026-03-01T10:00:00Z"), 5),
            [at("2026-03-01T10:00:00Z")]
        );
        assert!(
            hourly
                .missed(last, at("2026-03-01T09:59:00Z"), 5)
                .is_empty()
        );
    }

    #[test]
    fn bad_schedules_and_zones_say_what_is_wrong() {
        let err = Schedule::parse("*/10 * * * * *", "UTC").expect_err("six fields");
        assert!(err.contains("has 6 fields; a schedule has five"), "{err}");
        let err = Schedule::parse("61 * * * *", "UTC").expect_err("out of range");
        assert!(err.contains("`61 * * * *` is not a schedule"), "{err}");
        let err = Schedule::parse("0 9 * * *", "Asia/Tokio").expect_err("no such zone");
        assert!(err.contains("`Asia/Tokio` is not a time zone"), "{err}");
        assert!(Schedule::parse("@daily", "Europe/Berlin").is_ok());
        assert_eq!(
            tick_producer_id("report", at("2026-03-09T00:00:00Z")),
            "flow/cron.report@2026-03-09T00:00:00+00:00"
        );
    }
}
