//! Size and count limits, and what a database can store at all, checked by the
//! engine before anything reaches the store.

use serde_json::Value;

use crate::Error;

/// The longest error message stored (64 KiB); a longer one is cut at a character
/// boundary and ends with a marker saying how long it was.
pub const ERROR_MESSAGE_BYTES: usize = 64 * 1024;

/// The longest value a wait for an event matches on, as JSON text (1 KiB): match
/// keys are indexed, so they are ids, not documents. A longer one is refused when
/// the wait is made; an event's longer value is never keyed.
pub const MATCH_VALUE_BYTES: usize = 1024;

/// The longest signal name (256 bytes): a name is a key, like an event's producer id.
pub const SIGNAL_NAME_BYTES: usize = 256;

/// Why `name` cannot name a signal, if it cannot: it is empty, longer than
/// [`SIGNAL_NAME_BYTES`], or holds a NUL character. Checked where a run waits and
/// where a client sends, with the same words.
pub fn signal_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("a signal name cannot be empty".to_owned())
    } else if name.len() > SIGNAL_NAME_BYTES {
        Some(format!(
            "signal name `{}…` is {} bytes, over the limit of {SIGNAL_NAME_BYTES} bytes",
            name.chars().take(32).collect::<String>(),
            name.len()
        ))
    } else if name.contains('\0') {
        Some(format!(
            "signal name `{}` holds a NUL character (\\u0000), which the database cannot store",
            name.replace('\0', "\\u0000")
        ))
    } else {
        None
    }
}

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

    /// Checks a signal's payload: its size, as an event's, and no NUL in it.
    pub fn check_signal(&self, name: &str, data: &Value) -> Result<(), Error> {
        let bytes = crate::run::core::json_len(data);
        if bytes > self.event_bytes {
            return Err(Error::Limit {
                what: format!("the payload of signal `{name}`"),
                limit: self.event_bytes,
                actual: bytes,
                setting: "event_bytes",
            });
        }
        if let Some(path) = find_nul(data) {
            return Err(Error::InvalidSignal(format!(
                "the payload of signal `{name}` holds a NUL character (\\u0000) at `{path}`, \
                 which the database cannot store"
            )));
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

/// Where `value` holds a NUL character (in a string or a key), as a JSON path
/// (`$.lines[2].note`). PostgreSQL refuses NUL in `jsonb` and `text`, so flow refuses
/// it everywhere, on every backend, before anything is written.
pub fn find_nul(value: &Value) -> Option<String> {
    fn walk(value: &Value, path: &mut String) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Object(fields) => fields.iter().any(|(key, item)| {
                let len = path.len();
                path.push('.');
                path.push_str(&key.replace('\0', "\\u0000"));
                let found = key.contains('\0') || walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = String::from("$");
    walk(value, &mut path).then_some(path)
}

/// An error message as it is stored: NUL characters (which PostgreSQL refuses)
/// become U+FFFD, and a message over [`ERROR_MESSAGE_BYTES`] is cut, with a marker.
pub fn storable_message(message: &str) -> String {
    let mut clean = if message.contains('\0') {
        message.replace('\0', "\u{FFFD}")
    } else {
        message.to_owned()
    };
    if clean.len() > ERROR_MESSAGE_BYTES {
        let total = clean.len();
        let mut cut = ERROR_MESSAGE_BYTES;
        while !clean.is_char_boundary(cut) {
            cut -= 1;
        }
        clean.truncate(cut);
        clean.push_str(&format!(" [cut by flow: the message was {total} bytes]"));
    }
    clean
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// What flow can store as a step's or a handler's output: serialized to JSON and
/// read back on replay, and sent between threads. Implemented for every type that
/// is `Serialize + DeserializeOwned + Send + 'static`; the macros require it of
/// outputs, with a message that names both derives.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a step or function output: it must be Serialize + Deserialize",
    label = "not serializable",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to the type, or return a type that has them"
)]
pub trait Storable: serde::Serialize + serde::de::DeserializeOwned + Send + 'static {}

// Not shown in errors: the trait's own message names both derives at once.
#[diagnostic::do_not_recommend]
impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static> Storable for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_characters_are_found_with_their_path() {
        assert_eq!(find_nul(&json!({"a": [1, "ok"], "b": "fine"})), None);
        assert_eq!(
            find_nul(&json!({"a": [1, "x\u{0}y"]})).as_deref(),
            Some("$.a[1]")
        );
        assert_eq!(find_nul(&json!("\u{0}")).as_deref(), Some("$"));
        let key = serde_json::from_str::<Value>(r#"{"k\u0000": 1}"#).unwrap();
        assert_eq!(find_nul(&key).as_deref(), Some("$.k\\u0000"));
        // A backslash followed by "u0000" is six ordinary characters.
        assert_eq!(find_nul(&json!({"a": "\\u0000"})), None);
    }

    #[test]
    fn stored_messages_lose_nul_and_are_cut_with_a_marker() {
        assert_eq!(storable_message("a\0b"), "a\u{FFFD}b");
        let long = "é".repeat(ERROR_MESSAGE_BYTES);
        let cut = storable_message(&long);
        assert!(cut.len() < ERROR_MESSAGE_BYTES + 64, "{}", cut.len());
        assert!(cut.ends_with(&format!(
            "[cut by flow: the message was {} bytes]",
            long.len()
        )));
        assert_eq!(storable_message("short"), "short");
    }
}
