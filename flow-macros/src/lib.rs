//! The macros of [flow](https://docs.rs/flow): `#[function]`, `#[step]` and
//! `#[derive(Event)]`. They parse, check and expand; the generated code calls
//! `::flow::__private`, whose functions are tested in flow-core.
//!
//! Each macro reports every mistake at once, at the user's tokens, and in place of
//! a refused item emits a fallback with the signature the message asks for (and no
//! body), so that one mistake does not cascade into errors at its callers.

use proc_macro::TokenStream;
use quote::quote;
use syn::{DeriveInput, ItemFn};

mod attr;
mod cel;
mod errors;
mod event;
mod event_fields;
mod expand;
mod model;
mod triggers;

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

/// `#[derive(Triggers)]` on an enum with one variant per trigger of a function
/// with several, each wrapping its event type (`flow::CronTick` for its cron
/// schedules): the handler's parameter, the variant saying which event started
/// the run.
#[proc_macro_derive(Triggers)]
pub fn derive_triggers(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as DeriveInput);
    let mut errors = Errors::default();
    let expanded = triggers::derive(&input, &mut errors);
    let errors = errors.to_compile_errors();
    quote!(#expanded #errors).into()
}

/// Makes an async fn `(ctx: &Ctx, event: E) -> Result<T, FlowError>` a durable
/// function triggered by `event`. Keys: `event = "..."` (required), `id = "..."`,
/// `retries = 0..=20` (default 4), `backoff(initial = "1s", max = "10m", factor = 2.0, jitter = 0.2)`,
/// `on_failure = path`, up to five `cancel_on(event = "...", match = field)`, and
/// `timeouts(start = "10m", finish = "1h")`. Instead of `event`, `cron = "0 9 * * 1"`
/// (with `timezone = "Asia/Tokyo"`) starts a run at each tick of a schedule; its
/// handler takes a `flow::CronTick`. Up to ten triggers (`event` and `cron`, each
/// given again for another): the handler then takes a `#[derive(Triggers)]` enum.
#[proc_macro_attribute]
pub fn function(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = attr::parse_function_args(args.into(), &mut errors);
    let item = syn::parse_macro_input!(item as ItemFn);
    let model = model::handler(&item, &mut errors).map(|mut model| {
        model::grouped_event(&mut model, &args, &mut errors);
        model
    });
    // The triggers: each event, then the ticks of the cron schedules, all sent
    // as `flow/cron.<id>`.
    let mut triggers = args.events.clone();
    if let Some(cron) = args.crons.first() {
        let id = args
            .id
            .as_ref()
            .map(syn::LitStr::value)
            .unwrap_or_else(|| item.sig.ident.to_string());
        triggers.push(syn::LitStr::new(
            &format!("flow/cron.{id}"),
            cron.lit.span(),
        ));
    }
    if triggers.is_empty() && !args.cron_written {
        errors.at(
            &item.sig.ident,
            "#[function] needs its trigger: write `#[function(event = \"app/user.created\")]` \
             with the name declared on the event type, or `#[function(cron = \"0 9 * * 1\")]` \
             for a schedule",
        );
    }
    let trigger = triggers.first().cloned();
    match (model, &trigger) {
        (Some(model), Some(trigger)) if errors.is_empty() => {
            expand::function(&item, &args, trigger, &triggers[1..], &model).into()
        }
        _ => handler_fallback(&item, &errors),
    }
}

/// A refused handler with the signature the message asks for, `-> Result<T,
/// FlowError>` with `T` from what it returns, and no body, plus the errors: its
/// body's `?` and `Ok(..)` would otherwise each add an error to the one that
/// matters. Nothing calls a handler but the worker, so nothing else depends on it.
fn handler_fallback(item: &ItemFn, errors: &Errors) -> TokenStream {
    let errors = errors.to_compile_errors();
    let ItemFn {
        attrs, vis, sig, ..
    } = item;
    let name = &sig.ident;
    let generics = &sig.generics;
    let where_clause = &sig.generics.where_clause;
    let inputs = &sig.inputs;
    let output = model::output_of(&sig.output);
    quote! {
        #(#attrs)*
        #[allow(unused_variables, clippy::all)]
        #vis async fn #name #generics (#inputs) -> ::core::result::Result<#output, ::flow::FlowError>
        #where_clause {
            ::core::unreachable!("flow: this #[function] did not compile")
        }
        #errors
    }
    .into()
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
        _ => step_fallback(&item, &errors),
    }
}

/// A refused step as its callers expect it, plus the errors: `(ctx, args…)
/// -> Result<T, StepError>`, with `ctx` moved first (or added) and `T` taken from
/// what it returns. Its body is not emitted: the callers then type-check against
/// what the message says to write, and report nothing more (thiserror's fallback).
fn step_fallback(item: &ItemFn, errors: &Errors) -> TokenStream {
    let errors = errors.to_compile_errors();
    let ItemFn {
        attrs, vis, sig, ..
    } = item;
    let name = &sig.ident;
    let generics = &sig.generics;
    let where_clause = &sig.generics.where_clause;
    let output = model::output_of(&sig.output);
    let mut inputs: Vec<&syn::FnArg> = sig.inputs.iter().collect();
    if let Some(at) = inputs.iter().position(|arg| model::is_ctx_param(arg)) {
        inputs.remove(at);
    }
    // What a step takes its run from, as the expansion has it.
    let ctx_first = quote!(_ctx: &dyn ::flow::StartsSteps);
    let rest = inputs.iter();
    quote! {
        #(#attrs)*
        #[allow(unused_variables, clippy::all)]
        #vis fn #name #generics (#ctx_first #(, #rest)*) -> impl ::core::future::Future<
            Output = ::core::result::Result<#output, ::flow::StepError>,
        > + ::core::marker::Send #where_clause {
            async move { ::core::unreachable!("flow: this #[step] did not compile") }
        }
        #errors
    }
    .into()
}
