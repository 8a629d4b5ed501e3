//! Events gathered into one run: `batch_events(...)` and `debounce(...)`.
//!
//! A grouped function's events do not each start a run. The first event of a key
//! opens a **group**: a run that is stored at once, queued, but not due yet. The
//! key's later events join it (`flow.run_events` lists a group's events in order)
//! until it closes: a batch when it holds `max_size` events or its `timeout` has
//! passed since it opened; a debounce when `period` has passed since its last
//! event, or its `timeout` since its first. A closed group's run is due; the next
//! event of the key opens another group.
//!
//! A send joins an event to a group only while the group's run has neither started
//! nor come due, and it locks the run's row to do so: a claim that takes the run
//! first makes the send open a new group, and a claim that comes second sees every
//! event the send joined. The worker reads a grouped run's events after claiming
//! it ([`Store::group_events`](crate::Store::group_events)), so it reads them all.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The most events one group holds. A debounce window that reaches it closes
/// there, as a batch that is full does: its run starts with these events, and the
/// next event opens another window.
pub const MAX_GROUP_EVENTS: u32 = 1_000;

/// The longest a batch's `timeout`, a debounce's `period` or its `timeout` may be.
pub const MAX_GROUP_WAIT: Duration = Duration::from_secs(7 * 86_400);

/// The shortest a batch's `timeout` or a debounce's `period` may be.
pub const MIN_GROUP_WAIT: Duration = Duration::from_secs(1);

/// How a function gathers its events into runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    /// `batch_events(max_size = 100, timeout = "5s", key = "<CEL>")`: a run per
    /// `max_size` events of a key, or fewer once `timeout` has passed since the
    /// first of them. The handler takes `Vec<E>`.
    Batch {
        /// Events at most per run.
        max_size: u32,
        /// How long the first event of a batch waits for the others.
        timeout: Duration,
        /// A CEL expression whose value is the key; one key for the whole
        /// function without it.
        key: Option<&'static str>,
    },
    /// `debounce(period = "5m", key = "<CEL>", timeout = "1h", events = all)`: one
    /// run per key once `period` has passed without an event of it, or once
    /// `timeout` has passed since the first (a stream that never pauses still
    /// starts runs). The handler takes the last event, or with `events = all`
    /// every event of the window (`Vec<E>`).
    Debounce {
        /// The quiet time that closes a window.
        period: Duration,
        /// The longest a window stays open.
        timeout: Option<Duration>,
        /// A CEL expression whose value is the key; one key for the whole
        /// function without it.
        key: Option<&'static str>,
        /// The handler takes every event of the window, not only the last.
        all: bool,
    },
}

impl Grouping {
    /// Whether the handler takes a `Vec` of the group's events (else its last).
    pub fn delivers_all(&self) -> bool {
        match self {
            Grouping::Batch { .. } => true,
            Grouping::Debounce { all, .. } => *all,
        }
    }

    /// The rule as a sender applies it.
    pub fn rule(&self) -> GroupRule {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        match *self {
            Grouping::Batch {
                max_size,
                timeout,
                key,
            } => GroupRule {
                max_size,
                period_ms: None,
                timeout_ms: Some(ms(timeout)),
                key: key.map(str::to_owned),
            },
            Grouping::Debounce {
                period,
                timeout,
                key,
                all: _,
            } => GroupRule {
                max_size: MAX_GROUP_EVENTS,
                period_ms: Some(ms(period)),
                timeout_ms: timeout.map(ms),
                key: key.map(str::to_owned),
            },
        }
    }
}

/// A grouping as announced in the catalog, and as the send statements apply it:
/// a batch has no `period`; a debounce has one, and holds at most
/// [`MAX_GROUP_EVENTS`]. Whether the handler takes all events or the last is the
/// worker's business, not the sender's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRule {
    /// Events at most per group.
    pub max_size: u32,
    /// A debounce's quiet time, in milliseconds: each event moves the run's due
    /// time to this far after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_ms: Option<u64>,
    /// How long after its first event a group's run is due at the latest, in
    /// milliseconds (a batch's `timeout`, a debounce's `timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// A CEL expression whose value is the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl GroupRule {
    /// Refuses values the send statements cannot apply (rules announced by
    /// hand, not by the macro).
    pub(crate) fn check(&self) -> Result<(), String> {
        let (least, most) = (MIN_GROUP_WAIT.as_millis(), MAX_GROUP_WAIT.as_millis());
        if self.max_size == 0 || self.max_size > MAX_GROUP_EVENTS {
            return Err(format!(
                "grouping: max_size {} is not 1 to {MAX_GROUP_EVENTS}",
                self.max_size
            ));
        }
        if self.period_ms.is_none() && self.timeout_ms.is_none() {
            return Err("grouping: a batch needs a timeout".to_owned());
        }
        for (what, ms) in [("period", self.period_ms), ("timeout", self.timeout_ms)] {
            if let Some(ms) = ms
                && !(least..=most).contains(&u128::from(ms))
            {
                return Err(format!(
                    "grouping: {what} of {ms} ms is not 1 second to 7 days"
                ));
            }
        }
        Ok(())
    }
}

/// A group key decided at send: the group an event joins, with the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupKey {
    /// The key's value (`""` for a function without one).
    pub key: String,
    /// The rule.
    pub rule: GroupRule,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_announced_by_hand_are_checked() {
        let batch = Grouping::Batch {
            max_size: 10,
            timeout: Duration::from_secs(5),
            key: None,
        }
        .rule();
        assert_eq!(batch.check(), Ok(()));
        let zero = GroupRule {
            max_size: 0,
            ..batch.clone()
        };
        assert!(zero.check().unwrap_err().contains("max_size 0"));
        let no_timeout = GroupRule {
            timeout_ms: None,
            ..batch.clone()
        };
        assert!(no_timeout.check().unwrap_err().contains("needs a timeout"));
        let long = GroupRule {
            timeout_ms: Some(8 * 86_400_000),
            ..batch
        };
        assert!(long.check().unwrap_err().contains("not 1 second to 7 days"));
        let debounce = Grouping::Debounce {
            period: Duration::from_secs(60),
            timeout: None,
            key: Some("event.data.id"),
            all: false,
        };
        assert!(!debounce.delivers_all());
        assert_eq!(debounce.rule().max_size, MAX_GROUP_EVENTS);
        assert_eq!(debounce.rule().check(), Ok(()));
    }
}
