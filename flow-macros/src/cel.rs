//! The CEL expressions of `#[function(...)]` (a concurrency `key`, an
//! `idempotency` key), parsed here at
//! compile time with the parser the engine evaluates them with: a syntax error,
//! a variable other than `event`, a part of the event that does not exist, or a
//! function the engine does not evaluate is a compile error at the expression.
//! The fields read under `event.data` are returned, so that the expansion checks
//! them against the event type (a misspelt field does not compile).

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use syn::LitStr;

use crate::errors::Errors;

/// The functions of CEL's standard library that flow's engine evaluates (its
/// `cel` dependency is built without timestamps and durations). Operators
/// (`_+_`, `@in`, ...) are always accepted. A test evaluates each.
pub const FUNCTIONS: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "type",
    "dyn",
];

/// The parts of the run's event an expression may read.
const EVENT_PARTS: &[&str] = &["id", "name", "data", "ts"];

/// A parsed expression and the fields it reads under `event.data` (the first
/// name after it), in order, each once.
pub struct CheckedExpr {
    pub lit: LitStr,
    pub data_fields: Vec<String>,
}

/// Parses and checks `lit` as the expression of `what` (for messages: `key`).
pub fn check(lit: &LitStr, what: &str, errors: &mut Errors) -> Option<CheckedExpr> {
    let source = lit.value();
    let program = match cel::Env::stdlib().compile(&source) {
        Ok(program) => program,
        Err(e) => {
            errors.at(lit, format!("`{what}` is not a valid CEL expression:\n{e}"));
            return None;
        }
    };
    let mut walk = Walk {
        bound: Vec::new(),
        data_fields: Vec::new(),
        problems: Vec::new(),
    };
    walk.expr(&program.expression().expr);
    if walk.problems.is_empty() {
        Some(CheckedExpr {
            lit: lit.clone(),
            data_fields: walk.data_fields,
        })
    } else {
        for problem in walk.problems {
            errors.at(lit, format!("`{what} = \"{source}\"`: {problem}"));
        }
        None
    }
}

struct Walk {
    /// Names a comprehension (`exists`, `map`, ...) binds where it is walked.
    bound: Vec<String>,
    data_fields: Vec<String>,
    problems: Vec<String>,
}

impl Walk {
    fn expr(&mut self, expr: &Expr) {
        match expr {
            Expr::Ident(name) => self.variable(name),
            Expr::Select(select) => {
                if let Some(path) = expr_path(expr) {
                    return self.path(&path);
                }
                self.expr(&select.operand.expr);
            }
            Expr::Call(call) => {
                let operator = call.func_name.starts_with(['_', '@', '!', '-']);
                if !operator && !FUNCTIONS.contains(&call.func_name.as_str()) {
                    self.problems.push(format!(
                        "`{}` is not a function flow evaluates; it has {}",
                        call.func_name,
                        FUNCTIONS
                            .iter()
                            .map(|f| format!("`{f}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                if let Some(target) = &call.target {
                    self.expr(&target.expr);
                }
                self.all(&call.args);
            }
            Expr::Comprehension(c) => {
                self.expr(&c.iter_range.expr);
                self.expr(&c.accu_init.expr);
                let bound = self.bound.len();
                self.bound.push(c.iter_var.clone());
                self.bound.extend(c.iter_var2.clone());
                self.bound.push(c.accu_var.clone());
                self.expr(&c.loop_cond.expr);
                self.expr(&c.loop_step.expr);
                self.expr(&c.result.expr);
                self.bound.truncate(bound);
            }
            Expr::List(list) => self.all(&list.elements),
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(e) = &entry.expr {
                        self.expr(&e.key.expr);
                        self.expr(&e.value.expr);
                    }
                }
            }
            Expr::Struct(s) => self.problems.push(format!(
                "`{}{{...}}` builds a message type, which flow's expressions do not have",
                s.type_name
            )),
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    fn all(&mut self, exprs: &[IdedExpr]) {
        for e in exprs {
            self.expr(&e.expr);
        }
    }

    fn variable(&mut self, name: &str) {
        if name == "event" || self.bound.iter().any(|b| b == name) {
            return;
        }
        let hint = if name == "async" {
            " (`async`, the incoming event, is only defined where two events are compared)"
        } else {
            ""
        };
        self.problems.push(format!(
            "`{name}` is not defined: an expression reads the run's event as `event`{hint}"
        ));
    }

    /// A chain of selections from a name: `event.data.customer.id`.
    fn path(&mut self, path: &[&str]) {
        let [root, rest @ ..] = path else { return };
        self.variable(root);
        if *root != "event" || self.bound.iter().any(|b| b == root) {
            return;
        }
        match rest {
            [part, ..] if !EVENT_PARTS.contains(part) => self.problems.push(format!(
                "an event has `id`, `name`, `data` and `ts`, not `{part}`; \
                 its payload's fields are under `event.data` (`event.data.{part}`)"
            )),
            [] | [_] => {}
            ["data", field, ..] => {
                if !self.data_fields.iter().any(|f| f == field) {
                    self.data_fields.push(field.to_string());
                }
            }
            [_, more, ..] => self.problems.push(format!(
                "`event.{}` is text and has no field `{more}`",
                rest[0]
            )),
        }
    }
}

/// `a.b.c` as its names, when the expression is only selections from a name
/// (`has(a.b)` included).
fn expr_path(expr: &Expr) -> Option<Vec<&str>> {
    let mut names = Vec::new();
    let mut at = expr;
    loop {
        match at {
            Expr::Ident(name) => {
                names.push(name.as_str());
                names.reverse();
                return Some(names);
            }
            Expr::Select(select) => {
                names.push(select.field.as_str());
                at = &select.operand.expr;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(source: &str) -> Vec<String> {
        let mut errors = Errors::default();
        let lit = LitStr::new(source, proc_macro2::Span::call_site());
        check(&lit, "key", &mut errors);
        errors.messages()
    }

    fn fields(source: &str) -> Vec<String> {
        let mut errors = Errors::default();
        let lit = LitStr::new(source, proc_macro2::Span::call_site());
        let checked = check(&lit, "key", &mut errors).expect("accepted");
        checked.data_fields
    }

    #[test]
    fn fields_read_under_data_are_returned_once() {
        assert_eq!(fields("event.data.customer_id"), ["customer_id"]);
        assert_eq!(
            fields("event.data.a + ':' + event.data.b.c + event.data.a"),
            ["a", "b"]
        );
        assert_eq!(fields("event.name"), Vec::<String>::new());
        assert_eq!(
            fields("event.data.items.exists(i, i.sku == 'x') ? 'y' : 'n'"),
            ["items"]
        );
        assert_eq!(
            fields("has(event.data.region) ? event.data.region : ''"),
            ["region"]
        );
    }

    #[test]
    fn what_the_engine_cannot_evaluate_is_refused() {
        let p = problems("event.data.(");
        assert!(p[0].contains("not a valid CEL expression"), "{p:?}");
        let p = problems("customer_id");
        assert!(p[0].contains("`customer_id` is not defined"), "{p:?}");
        let p = problems("async.data.id");
        assert!(p[0].contains("only defined where two events"), "{p:?}");
        let p = problems("event.customer_id");
        assert!(p[0].contains("`event.data.customer_id`"), "{p:?}");
        let p = problems("event.name.first");
        assert!(p[0].contains("`event.name` is text"), "{p:?}");
        let p = problems("lowerAscii(event.name)");
        assert!(p[0].contains("`lowerAscii` is not a function"), "{p:?}");
        let p = problems("timestamp(event.ts)");
        assert!(p[0].contains("`timestamp` is not a function"), "{p:?}");
    }

    /// Every function the macro accepts evaluates in the engine's CEL build.
    #[test]
    fn every_accepted_function_evaluates() {
        let samples = [
            ("size", "size('ab') == 2"),
            ("contains", "'abc'.contains('b')"),
            ("startsWith", "'abc'.startsWith('a')"),
            ("endsWith", "'abc'.endsWith('c')"),
            ("matches", "'abc'.matches('^a.c$')"),
            ("int", "int('2') == 2"),
            ("uint", "uint(2) == 2u"),
            ("double", "double(2) == 2.0"),
            ("string", "string(2) == '2'"),
            ("bytes", "bytes('a') == b'a'"),
            ("bool", "bool('true')"),
            ("type", "type(1) == int"),
            ("dyn", "dyn(1) == 1"),
        ];
        assert_eq!(
            samples.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
            FUNCTIONS,
            "one sample per accepted function"
        );
        let env = std::sync::Arc::new(cel::Env::stdlib());
        for (function, source) in samples {
            let program = env.compile(source).expect(source);
            let context = cel::Context::with_env(env.clone());
            assert_eq!(
                program.execute(&context),
                Ok(cel::Value::Bool(true)),
                "{function}: {source}"
            );
        }
    }
}
