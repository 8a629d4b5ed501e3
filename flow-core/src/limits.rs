//! Size and count limits, checked by the engine before anything reaches the store.

use crate::Error;

/// Limits on what flow stores. Each is enforced with an error naming it and its value:
/// event size and count at send, step output and run state at checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest event data, serialized as JSON (default 512 KiB).
    pub event_bytes: usize,
    /// Most events in one send (default 5,000).
    pub events_per_send: usize,
    /// Largest step output, serialized as JSON (default 4 MiB).
    pub step_output_bytes: usize,
    /// Largest sum of a run's step outputs (default 32 MiB).
    pub run_state_bytes: usize,
    /// Most steps in one run (default 1,000).
    pub steps_per_run: usize,
}

impl Limits {
    /// The defaults.
    pub const DEFAULT: Limits = Limits {
        event_bytes: 512 * 1024,
        events_per_send: 5_000,
        step_output_bytes: 4 * 1024 * 1024,
        run_state_bytes: 32 * 1024 * 1024,
        steps_per_run: 1_000,
    };

    /// Checks a send of `count` events.
    pub fn check_send_count(&self, count: usize) -> Result<(), Error> {
        if count > self.events_per_send {
            return Err(Error::TooMany {
                what: "events in one send".into(),
                limit: self.events_per_send,
                actual: count,
                setting: "events_per_send",
            });
        }
        Ok(())
    }

    /// Checks one event's serialized data size.
    pub fn check_event(&self, name: &str, bytes: usize) -> Result<(), Error> {
        if bytes > self.event_bytes {
            return Err(Error::Limit {
                what: format!("the data of event `{name}`"),
                limit: self.event_bytes,
                actual: bytes,
                setting: "event_bytes",
            });
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}
