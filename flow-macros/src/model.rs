//! The signatures `#[function]` and `#[step]` accept, read from the user's fn with
//! their spans, and checked: `&Ctx` first, an event type second (handlers), and a
//! `Result<T, E>` return.

use syn::{FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReturnType, Type};

use crate::errors::Errors;

/// A handler: `async fn name(ctx: &Ctx, event: E) -> Result<T, Err>`.
pub struct Handler<'a> {
    pub name: &'a Ident,
    /// The event type (of each event, for a handler that takes `Vec<E>`).
    pub event: &'a Type,
    /// It takes `Vec<E>`: every event of its group (`batch_events`, `debounce(...,
    /// events = all)`).
    pub many: bool,
    pub output: &'a Type,
    pub error: &'a Type,
}

/// A step: `async fn name(ctx: &Ctx, args…) -> Result<T, E>`.
pub struct Step<'a> {
    pub ctx: &'a Ident,
    pub output: &'a Type,
    pub error: &'a Type,
}

pub fn handler<'a>(item: &'a ItemFn, errors: &mut Errors) -> Option<Handler<'a>> {
    let sig = &item.sig;
    check_async(item, "#[function]", errors);
    if !sig.generics.params.is_empty() {
        errors.at(
            &sig.generics,
            "a #[function] handler cannot be generic: name the event type it takes",
        );
    }
    let mut inputs = sig.inputs.iter();
    let ctx = inputs.next();
    match ctx {
        Some(arg) => {
            ctx_param(arg, "#[function]", errors);
        }
        None => errors.at(
            &sig.ident,
            "a #[function] handler takes `ctx: &Ctx` and its event: write `async fn handler(ctx: &Ctx, event: MyEvent)`",
        ),
    }
    let event = match inputs.next() {
        Some(FnArg::Typed(pat)) => match &*pat.ty {
            Type::Reference(r) => {
                let (name, elem) = (&pat.pat, &r.elem);
                errors.at(
                    r,
                    format!(
                        "take the event by value: write `{}: {}`; each execution of the run \
                         reads its own copy from the store",
                        quote::quote!(#name),
                        quote::quote!(#elem).to_string().replace(' ', "")
                    ),
                );
                None
            }
            ty => Some(ty),
        },
        Some(FnArg::Receiver(r)) => {
            errors.at(r, "a #[function] handler cannot take `self`");
            None
        }
        None => {
            if ctx.is_some() {
                errors.at(
                    &sig.inputs,
                    "a #[function] handler takes its event as the second parameter: add `event: MyEvent`",
                );
            }
            None
        }
    };
    for extra in inputs {
        errors.at(
            extra,
            "a #[function] handler takes exactly two parameters, `ctx: &Ctx` and its event; \
             pass anything else through the event, or make it a global",
        );
    }
    let (output, error) =
        result_types(&sig.output, &sig.ident, "#[function]", "FlowError", errors)?;
    Some(Handler {
        name: &sig.ident,
        event: event?,
        many: false,
        output,
        error,
    })
}

pub fn step<'a>(item: &'a ItemFn, errors: &mut Errors) -> Option<Step<'a>> {
    let sig = &item.sig;
    check_async(item, "#[step]", errors);
    let ctx = match sig.inputs.first() {
        Some(arg) => ctx_param(arg, "#[step]", errors),
        None => {
            errors.at(
                &sig.ident,
                "a #[step] takes `ctx: &Ctx` first: write `async fn my_step(ctx: &Ctx, ...)`",
            );
            None
        }
    };
    for arg in sig.inputs.iter().skip(1) {
        if let FnArg::Receiver(r) = arg {
            errors.at(
                r,
                "a #[step] cannot take `self`; make it a free fn with `ctx: &Ctx` first",
            );
        }
    }
    let (output, error) = result_types(&sig.output, &sig.ident, "#[step]", "StepError", errors)?;
    if let Some(borrowed) = first_reference(output) {
        errors.at(
            borrowed,
            "a step's output is stored as JSON and read back from it on replay, so it \
             cannot borrow: return an owned type (`String` for `&str`, `Vec<T>` for `&[T]`)",
        );
        return None;
    }
    Some(Step {
        ctx: ctx?,
        output,
        error,
    })
}

fn check_async(item: &ItemFn, attr: &str, errors: &mut Errors) {
    if item.sig.asyncness.is_none() {
        errors.at(
            item.sig.fn_token,
            format!(
                "{attr} must be on an `async fn`: write `async fn {}`",
                item.sig.ident
            ),
        );
    }
}

/// The `ctx: &Ctx` parameter; its binding's ident.
/// Whether `ty` is `&Ctx` (by its last path segment).
fn is_ctx_ref(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) if r.mutability.is_none() => {
            matches!(&*r.elem, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Ctx"))
        }
        _ => false,
    }
}

/// Whether a parameter is `name: &Ctx`.
pub fn is_ctx_param(arg: &FnArg) -> bool {
    matches!(arg, FnArg::Typed(typed) if is_ctx_ref(&typed.ty))
}

/// What a fn returns on success: `T` of `Result<T, E>`, else the type itself, `()`
/// when it declares none. For fallback items, which keep callers type-checking.
pub fn output_of(output: &ReturnType) -> Type {
    let ReturnType::Type(_, ty) = output else {
        return syn::parse_quote!(());
    };
    if let Type::Path(p) = &**ty
        && let Some(last) = p.path.segments.last()
        && last.ident == "Result"
        && let PathArguments::AngleBracketed(args) = &last.arguments
        && let Some(GenericArgument::Type(ok)) = args.args.first()
    {
        return ok.clone();
    }
    (**ty).clone()
}

fn ctx_param<'a>(arg: &'a FnArg, attr: &str, errors: &mut Errors) -> Option<&'a Ident> {
    let help = format!("the first parameter of a {attr} must be `ctx: &Ctx`");
    let FnArg::Typed(typed) = arg else {
        errors.at(arg, format!("{help}, not `self`"));
        return None;
    };
    if !is_ctx_ref(&typed.ty) {
        errors.at(&typed.ty, help);
        return None;
    }
    match &*typed.pat {
        Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => Some(&p.ident),
        other => {
            errors.at(
                other,
                format!("{help}: name it with a plain identifier such as `ctx`"),
            );
            None
        }
    }
}

/// The first reference inside `ty` (`&str`, `Vec<&T>`, `(&A, B)`), if any.
fn first_reference(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Reference(_) => Some(ty),
        Type::Paren(p) => first_reference(&p.elem),
        Type::Group(g) => first_reference(&g.elem),
        Type::Array(a) => first_reference(&a.elem),
        Type::Slice(s) => first_reference(&s.elem),
        Type::Tuple(t) => t.elems.iter().find_map(first_reference),
        Type::Path(p) => p
            .path
            .segments
            .iter()
            .find_map(|segment| match &segment.arguments {
                PathArguments::AngleBracketed(args) => args.args.iter().find_map(|arg| match arg {
                    GenericArgument::Type(t) => first_reference(t),
                    _ => None,
                }),
                _ => None,
            }),
        _ => None,
    }
}

/// `T` and `E` of a `-> Result<T, E>` return type.
fn result_types<'a>(
    output: &'a ReturnType,
    name: &Ident,
    attr: &str,
    error_type: &str,
    errors: &mut Errors,
) -> Option<(&'a Type, &'a Type)> {
    let help = format!("a {attr} must return `Result<T, {error_type}>` with a serializable `T`");
    let ty = match output {
        ReturnType::Type(_, ty) => ty,
        ReturnType::Default => {
            errors.at(name, format!("{help}: add `-> Result<(), {error_type}>`"));
            return None;
        }
    };
    if let Type::Path(p) = &**ty
        && let Some(last) = p.path.segments.last()
        && last.ident == "Result"
        && let PathArguments::AngleBracketed(args) = &last.arguments
    {
        let types: Vec<&Type> = args
            .args
            .iter()
            .filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect();
        if let [ok, err] = types[..] {
            return Some((ok, err));
        }
    }
    errors.at(ty, help);
    None
}

/// `T` of a `Vec<T>` (as written, `Vec` or a path ending in it).
pub fn vec_element(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "Vec" {
        return None;
    }
    match &last.arguments {
        PathArguments::AngleBracketed(args) if args.args.len() == 1 => match args.args.first()? {
            GenericArgument::Type(inner) => Some(inner),
            _ => None,
        },
        _ => None,
    }
}

/// A grouped handler's event parameter: `Vec<E>` where it takes every event of
/// its group, `E` where it takes one; the other is refused with what to write.
pub fn grouped_event(
    handler: &mut Handler<'_>,
    args: &crate::attr::FunctionArgs,
    errors: &mut Errors,
) {
    let element = vec_element(handler.event);
    let group = args.grouping.as_ref();
    if group.is_none() && args.grouping_written {
        // The refused `batch_events` or `debounce` is the error to fix first.
        return;
    }
    match (group, element) {
        (Some(group), Some(element)) if group.all => {
            handler.event = element;
            handler.many = true;
        }
        (Some(group), None) if group.all => {
            let ty = handler.event;
            let what = match group.batch {
                Some(_) => "`batch_events` starts a run with every event of a batch",
                None => "`debounce(..., events = all)` starts a run with every event of the window",
            };
            errors.at(
                ty,
                format!(
                    "{what}: take them as `events: Vec<{}>`",
                    quote::quote!(#ty).to_string().replace(' ', "")
                ),
            );
        }
        (Some(_), Some(element)) => errors.at(
            handler.event,
            format!(
                "`debounce` hands the handler the last event of the window: take `event: {}`, \
                 or write `events = all` in `debounce(...)` to take every event",
                quote::quote!(#element).to_string().replace(' ', "")
            ),
        ),
        (None, Some(element)) => errors.at(
            handler.event,
            format!(
                "a run starts with one event: take `event: {}`; to take several events in one \
                 run, add `batch_events(max_size = 100, timeout = \"5s\")` or \
                 `debounce(period = \"5m\", events = all)`",
                quote::quote!(#element).to_string().replace(' ', "")
            ),
        ),
        _ => {}
    }
}
