//! The CEL expressions of `#[function(...)]`, compiled once (a concurrency `key` by
//! the worker that serves the function, an `idempotency` key by the sender, from
//! the function catalog) and evaluated in Rust against an event: `event.data.customer_id`, `event.name + ":" + event.data.region`.
//!
//! The macro has already parsed each one and checked its fields against the event
//! type; what can still go wrong here is the data of one event (a field it lacks),
//! which the caller reports for that run.

use std::sync::{Arc, LazyLock};

use cel::{Context, Env, Program};
use serde_json::{Value, json};

use crate::StoredEvent;

/// The standard CEL environment, built once: building one per evaluation would
/// cost more than the evaluation.
static STDLIB: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// A compiled expression with its source, for messages.
pub struct Expr {
    source: Box<str>,
    program: Program,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expr").field(&self.source).finish()
    }
}

impl Expr {
    /// Compiles `source`; the error is the parser's, naming the position.
    pub fn compile(source: &str) -> Result<Expr, String> {
        let program = STDLIB
            .compile(source)
            .map_err(|e| format!("`{source}` is not a valid CEL expression: {e}"))?;
        Ok(Expr {
            source: source.into(),
            program,
        })
    }

    /// The expression's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the expression against `event` and returns its value as a key:
    /// a string as it is, anything else as its JSON text (`42`, `true`, `null`).
    pub fn key(&self, event: &StoredEvent) -> Result<String, String> {
        Ok(Expr::as_key(self.value(event)?))
    }

    /// A value as a key: a string as it is, anything else as its JSON text.
    pub fn as_key(value: Value) -> String {
        match value {
            Value::String(s) => s,
            other => other.to_string(),
        }
    }

    /// Evaluates the expression against `event`, as JSON.
    pub fn value(&self, event: &StoredEvent) -> Result<Value, String> {
        let fail = |problem: String| format!("`{}` could not be evaluated: {problem}", self.source);
        let event = json!({
            "id": event.id.to_string(),
            "name": event.name,
            "data": event.data,
            "ts": event.ts.to_rfc3339(),
        });
        let event = cel::to_value(event).map_err(|e| fail(e.to_string()))?;
        let mut context = Context::with_env(STDLIB.clone());
        context.add_variable_from_value("event", event);
        let value = self
            .program
            .execute(&context)
            .map_err(|e| fail(e.to_string()))?;
        value.json().map_err(|e| fail(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventId;

    fn event(data: Value) -> StoredEvent {
        StoredEvent {
            id: EventId(uuid::Uuid::nil()),
            name: "app/order.placed".into(),
            data,
            ts: chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("a time"),
        }
    }

    #[test]
    fn keys_are_strings_or_the_json_of_other_values() {
        let e = event(json!({"customer": "c-1", "n": 42, "vip": true, "tags": ["a"]}));
        let key = |src| Expr::compile(src).expect("compiles").key(&e);
        assert_eq!(key("event.data.customer"), Ok("c-1".into()));
        assert_eq!(key("event.data.n"), Ok("42".into()));
        assert_eq!(key("event.data.vip"), Ok("true".into()));
        assert_eq!(key("event.data.tags"), Ok(r#"["a"]"#.into()));
        assert_eq!(
            key("event.name + '/' + event.data.customer"),
            Ok("app/order.placed/c-1".into())
        );
        assert_eq!(key("event.data.n > 10 ? 'big' : 'small'"), Ok("big".into()));
    }

    #[test]
    fn a_missing_field_is_an_error_naming_the_expression() {
        let e = event(json!({"customer": "c-1"}));
        let err = Expr::compile("event.data.region")
            .expect("compiles")
            .key(&e)
            .expect_err("no such field");
        assert!(
            err.contains("`event.data.region` could not be evaluated"),
            "{err}"
        );
        assert!(err.contains("region"), "{err}");
    }

    #[test]
    fn a_bad_expression_does_not_compile() {
        let err = Expr::compile("event.data.(").expect_err("bad syntax");
        assert!(err.contains("not a valid CEL expression"), "{err}");
    }

    #[test]
    fn expressions_are_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Expr>();
    }
}
