//! Events: the typed [`Event`] trait that `#[derive(Event)]` implements, and
//! [`NewEvent`], an event on its way into the store.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Error;

/// A typed event. Derive it: `#[derive(Event, Serialize, Deserialize)]` with
/// `#[event(name = "app/user.created")]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a flow event",
    label = "not an event type",
    note = "derive it: `#[derive(flow::Event, Serialize, Deserialize)]` with `#[event(name = \"app/thing.happened\")]` on the type"
)]
pub trait Event: Serialize + DeserializeOwned + Send + 'static {
    /// The event's name, as functions name their trigger.
    const NAME: &'static str;
    /// The names of other events whose data is of this type too
    /// (`#[event(name = "app/user.created", name = "app/user.updated")]`): a
    /// function triggered by any of them may take it. Sends of a value of it and
    /// waits for it use [`NAME`](Self::NAME).
    const ALSO: &'static [&'static str] = &[];
}

/// The fields of an event type that a wait can match on, one [`Field`] each:
/// `#[derive(Event)]` implements it for a struct with named fields, so that
/// `.matching(|f| f.payment_id, id)` names a field the compiler checks.
pub trait EventFields: Event {
    /// A struct with one public [`Field`] per field of the event's data.
    type Fields: 'static;
    /// Its value.
    const FIELDS: Self::Fields;
    /// The same fields named as they are in the event's JSON data (serde's
    /// renames applied): what an expression's `event.data.<name>` must name.
    type Data: 'static;
    /// Its value.
    const DATA: Self::Data;
}

/// A field of event type `E` whose value is a `T`, named as it appears in the
/// event's JSON data (serde's renames applied). Made by `#[derive(Event)]`.
pub struct Field<E, T> {
    name: &'static str,
    types: std::marker::PhantomData<fn() -> (E, T)>,
}

impl<E, T> Field<E, T> {
    #[doc(hidden)]
    pub const fn new(name: &'static str) -> Self {
        Field {
            name,
            types: std::marker::PhantomData,
        }
    }

    /// The field's name in the event's JSON data.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<E, T> Clone for Field<E, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E, T> Copy for Field<E, T> {}

impl<E, T> std::fmt::Debug for Field<E, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Field({})", self.name)
    }
}

/// An event ready to be sent: its name, JSON data, and optionally the producer's
/// own id (which deduplicates for 24 hours) and timestamp.
///
/// ```
/// # use flow_core::NewEvent;
/// let e = NewEvent::raw("billing/invoice.paid", serde_json::json!({"invoice": 42}))
///     .unwrap()
///     .id("invoice-42-paid");
/// assert_eq!(e.name(), "billing/invoice.paid");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    name: String,
    data: Value,
    id: Option<String>,
    ts: Option<DateTime<Utc>>,
}

impl NewEvent {
    /// A typed event.
    pub fn new<E: Event>(event: &E) -> Result<Self, Error> {
        let data = serde_json::to_value(event)
            .map_err(|e| Error::Serde(format!("event `{}` did not serialize: {e}", E::NAME)))?;
        Ok(NewEvent {
            name: E::NAME.to_owned(),
            data,
            id: None,
            ts: None,
        })
    }

    /// An event given by name and JSON data (for producers without the Rust type).
    pub fn raw(name: impl Into<String>, data: Value) -> Result<Self, Error> {
        let name = name.into();
        check_name(&name).map_err(Error::InvalidEvent)?;
        Ok(NewEvent {
            name,
            data,
            id: None,
            ts: None,
        })
    }

    /// The producer's id for this event: a second event with the same id within
    /// 24 hours is accepted but starts nothing.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// When the event happened (defaults to when it is stored).
    pub fn ts(mut self, ts: DateTime<Utc>) -> Self {
        self.ts = Some(ts);
        self
    }

    /// The event's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The event's data.
    pub fn data(&self) -> &Value {
        &self.data
    }

    /// The producer's id, if any.
    pub fn producer_id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The producer's timestamp, if any.
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        self.ts
    }
}

/// Anything that can be sent as one event: a typed [`Event`] or a [`NewEvent`].
pub trait IntoEvent {
    /// Converts into a [`NewEvent`].
    fn into_event(self) -> Result<NewEvent, Error>;
}

impl<E: Event> IntoEvent for E {
    fn into_event(self) -> Result<NewEvent, Error> {
        NewEvent::new(&self)
    }
}

impl IntoEvent for NewEvent {
    fn into_event(self) -> Result<NewEvent, Error> {
        Ok(self)
    }
}

/// One event or several, as [`Ctx::send_event`](crate::Ctx::send_event) takes
/// them: a typed [`Event`], a [`NewEvent`], or a `Vec` or array of either.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent as events",
    label = "expected an event, a `NewEvent`, or a `Vec` or array of them",
    note = "derive `flow::Event` for the type, or build a `flow::NewEvent`"
)]
pub trait IntoEvents {
    /// Converts into [`NewEvent`]s, in order.
    fn into_events(self) -> Result<Vec<NewEvent>, Error>;
}

#[diagnostic::do_not_recommend]
impl<T: IntoEvent> IntoEvents for T {
    fn into_events(self) -> Result<Vec<NewEvent>, Error> {
        Ok(vec![self.into_event()?])
    }
}

impl<T: IntoEvent> IntoEvents for Vec<T> {
    fn into_events(self) -> Result<Vec<NewEvent>, Error> {
        self.into_iter().map(IntoEvent::into_event).collect()
    }
}

impl<T: IntoEvent, const N: usize> IntoEvents for [T; N] {
    fn into_events(self) -> Result<Vec<NewEvent>, Error> {
        self.into_iter().map(IntoEvent::into_event).collect()
    }
}

/// The rule for event names, shared by `#[derive(Event)]` (at compile time, in
/// flow-macros' `event.rs`, which repeats it) and [`NewEvent::raw`]: non-empty, at
/// most 256 bytes, no whitespace or control characters, no `/` at either end. As
/// in Inngest, names read `app/user.created`: a prefix, `/`, then a dotted name.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an event name cannot be empty; use a name like \"app/user.created\"".into());
    }
    if name.len() > 256 {
        return Err(format!(
            "event name `{name}` is {} bytes long; the limit is 256",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_whitespace()) {
        return Err(format!(
            "event name `{name}` contains whitespace ({c:?}); use a name like \"app/user.created\""
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "event name {name:?} contains a control character ({c:?}); use a name like \
             \"app/user.created\""
        ));
    }
    if name.starts_with('/') || name.ends_with('/') {
        return Err(format!(
            "event name `{name}` starts or ends with `/`; `/` separates the parts of a name, \
             as in \"app/user.created\""
        ));
    }
    Ok(())
}

/// An event as stored, handed to the run it triggered.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    /// Its id.
    pub id: crate::EventId,
    /// Its name.
    pub name: String,
    /// Its data.
    pub data: Value,
    /// When it happened.
    pub ts: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_events_with_bad_names_are_refused_with_the_reason() {
        let empty = NewEvent::raw("", Value::Null).unwrap_err().to_string();
        assert!(empty.contains("cannot be empty"), "{empty}");
        let spaced = NewEvent::raw("app/user created", Value::Null)
            .unwrap_err()
            .to_string();
        assert!(spaced.contains("whitespace"), "{spaced}");
        let long = NewEvent::raw("x".repeat(300), Value::Null)
            .unwrap_err()
            .to_string();
        assert!(long.contains("the limit is 256"), "{long}");
        for slashed in ["/app/user.created", "app/user.created/"] {
            let err = NewEvent::raw(slashed, Value::Null).unwrap_err().to_string();
            assert!(err.contains("starts or ends with `/`"), "{err}");
        }
        let control = NewEvent::raw("app/user\u{0}created", Value::Null)
            .unwrap_err()
            .to_string();
        assert!(control.contains("control character"), "{control}");
        assert!(NewEvent::raw("app/user.created", Value::Null).is_ok());
    }
}
