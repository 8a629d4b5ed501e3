//! The macros of [flow](https://docs.rs/flow): `#[function]`, `#[step]` and
//! `#[derive(Event)]`. They parse, check and expand; the generated code calls
//! `::flow::__private`, whose functions are tested in flow-core.
//!
//! Each macro reports every mistake at once, at the user's tokens, and still emits
//! the user's item so one mistake does not cascade.

use proc_macro::TokenStream;
use quote::quote;
use syn::{DeriveInput, ItemFn};

mod attr;
mod errors;
mod event;
mod expand;
mod model;

use errors::Errors;

/// Declares a typed event: `#[derive(Event, Serialize, Deserialize)]` with
/// `#[event(name = "app/user.created")]`.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as DeriveInput);
    let mut errors = Errors::default();
    let expanded = event::derive(&input, &mut errors);
    let errors = errors.to_compile_errors();
    quote!(#expanded #errors).into()
}

/// Makes an async fn `(ctx: &Ctx, event: E) -> Result<T, FlowError>` a durable
/// function triggered by `event`. Keys: `event = "..."` (required), `id = "..."`,
/// `retries = 0..=20` (default 4), `backoff(initial = "1s", max = "10m", factor = 2.0, jitter = 0.2)`.
#[proc_macro_attribute]
pub fn function(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = attr::parse_function_args(args.into(), &mut errors);
    let item = syn::parse_macro_input!(item as ItemFn);
    let model = model::handler(&item, &mut errors);
    if args.event.is_none() {
        errors.at(
            &item.sig.ident,
            "#[function] needs its trigger: write `#[function(event = \"app/user.created\")]` with the name \
             declared on the event type",
        );
    }
    match (model, &args.event) {
        (Some(model), Some(event)) if errors.is_empty() => {
            expand::function(&item, &args, event, &model).into()
        }
        _ => with_errors(&item, &errors),
    }
}

/// Makes an async fn `(ctx: &Ctx, ...) -> Result<T, E>` a checkpointed step: its
/// result is recorded once it succeeds, and it is retried alone when it fails.
/// Keys: `id = "..."` (default the fn name), `retries = 0..=20` (default the
/// function's), `backoff(...)` (as on `#[function]`).
#[proc_macro_attribute]
pub fn step(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = attr::parse_step_args(args.into(), &mut errors);
    let item = syn::parse_macro_input!(item as ItemFn);
    let model = model::step(&item, &mut errors);
    match model {
        Some(model) if errors.is_empty() => expand::step(&item, &args, &model).into(),
        _ => with_errors(&item, &errors),
    }
}

/// The user's item unchanged, plus the errors: one mistake must not cascade into
/// "cannot find function" errors at every call site.
fn with_errors(item: &ItemFn, errors: &Errors) -> TokenStream {
    let errors = errors.to_compile_errors();
    // A missing `async` is reported once, not at every `.await` in the body.
    let mut item = item.clone();
    if item.sig.asyncness.is_none() {
        item.sig.asyncness = Some(syn::Token![async](item.sig.fn_token.span));
    }
    quote!(#item #errors).into()
}
