//! Expansion of `#[function]` and `#[step]` into calls of flow-core's
//! `__private` API. Generated names start with `__flow`.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, LitStr};

use crate::attr::{Backoff, FunctionArgs, StepArgs};
use crate::model::{Handler, Step};

pub fn function(
    item: &ItemFn,
    args: &FunctionArgs,
    event_lit: &LitStr,
    more_triggers: &[LitStr],
    model: &Handler<'_>,
) -> TokenStream {
    let Handler {
        name,
        event,
        many,
        output,
        error,
    } = model;
    let vis = &item.vis;
    let id = args
        .id
        .as_ref()
        .map(LitStr::value)
        .unwrap_or_else(|| name.to_string());
    let retries = args.retries.unwrap_or(4);
    let backoff = backoff_value(&args.backoff);
    let handler = format_ident!("__flow_handler");
    let type_name = quote!(#event).to_string().replace(' ', "");
    let doc = format!(
        "The flow function `{id}`, triggered by `{}`. Register it explicitly with \
         `WorkerBuilder::register::<{name}>()`.",
        event_lit.value()
    );

    // The trigger must equal the event type's declared name: a const assertion at the
    // user's `event = "..."` literal. A const panic takes one string, so the message is
    // concatenated at compile time.
    // A statement of the array length the other generated items live in (below),
    // which is evaluated at compile time.
    let several = !more_triggers.is_empty();
    let name_check = if several {
        several_triggers_check(name, event, event_lit, more_triggers)
    } else if !args.crons.is_empty() {
        // A cron function's event is its tick: the handler must take one.
        quote_spanned! {event.span()=>
            {
                const fn __flow_takes_cron_ticks<T: ::flow::__private::IsCronTick>() {}
                __flow_takes_cron_ticks::<#event>();
            }
        }
    } else {
        quote_spanned! {event_lit.span()=>
        {
            const TRIGGER: &str = #event_lit;
            const NAME: &str = <#event as ::flow::__private::Event>::NAME;
            const PARTS: [&str; 9] = [
                "#[function] `", stringify!(#name), "` is triggered by \"", TRIGGER,
                "\" but its event type `", #type_name, "` is named \"", NAME,
                "\": make the two names equal",
            ];
            const LEN: usize = ::flow::__private::concat_len(&PARTS);
            const MESSAGE: [u8; LEN] = ::flow::__private::concat::<LEN>(&PARTS);
            if !::flow::__private::str_eq(TRIGGER, NAME)
                && !::flow::__private::has_variant(
                    <#event as ::flow::__private::Event>::ALSO,
                    TRIGGER,
                )
                && !::flow::__private::str_eq(NAME, ::flow::__private::INVALID_EVENT_NAME)
            {
                ::core::panic!("{}", ::flow::__private::as_str(&MESSAGE));
            }
        }
        }
    };
    // Spanned at the fn name: a handler future that is not `Send` is reported there.
    // The locals are interpolated with call-site spans, so that a name coming from
    // another macro's expansion (another hygiene context) still finds them.
    // Mixed-site: the user's code cannot see them, so a handler named `ctx`, `data`
    // or `event` is not shadowed by them (the same ident object at the definition
    // and every use, so a fn coming from another macro's expansion is fine too).
    let ctx = Ident::new("__flow_ctx", Span::mixed_site());
    let data = Ident::new("__flow_data", Span::mixed_site());
    let decoded = Ident::new("__flow_event", Span::mixed_site());
    let result = Ident::new("__flow_result", Span::mixed_site());
    // Spanned at the user's output type: an output that cannot be stored is one
    // error there.
    let outcome = quote_spanned! {output.span()=>
        ::flow::HandlerOutcome::of::<#output>(#result)
    };
    // Spanned at the user's error type: an error type a handler cannot fail with
    // is one error there.
    // Call-site hygiene, so that its span joins the tokens around it (a call
    // with a mixed-site argument would be reported at the attribute); the
    // user's code never runs inside the arm that binds it.
    let failure = Ident::new("__flow_failure", error.span());
    // The trait's method, not `<E as ...>`: the generated code then names the
    // user's error type nowhere, so a type not in scope is one error, in the
    // user's signature.
    let into_flow_error = quote_spanned! {error.span()=>
        ::flow::HandlerFailure::into_flow_error(#failure)
    };
    let event_name = quote_spanned! {event.span()=> <#event as ::flow::Event>::NAME };
    // A grouped handler taking every event of its group decodes them all.
    let decoded_type = match many {
        true => quote_spanned! {event.span()=> ::std::vec::Vec<#event> },
        false => quote!(#event),
    };
    let trigger_name = Ident::new("__flow_trigger", Span::mixed_site());
    // Several triggers: the event's name picks the variant of the handler's type.
    let decode = match several {
        true => quote_spanned! {event.span()=>
            <#event as ::flow::__private::Triggers>::decode(&#trigger_name, #data)
        },
        false => quote! {
            ::flow::__private::decode_event::<#decoded_type>(#data, #event_name)
        },
    };
    let boxed = quote_spanned! {name.span()=>
        ::std::boxed::Box::pin(async move {
            let _ = &#trigger_name;
            let #decoded = match #decode {
                ::core::result::Result::Ok(event) => event,
                ::core::result::Result::Err(problem) => {
                    return ::flow::HandlerOutcome::Failed(problem);
                }
            };
            let #result = #name(&#ctx, #decoded).await;
            let #result = match #result {
                ::core::result::Result::Ok(output) => ::core::result::Result::Ok(output),
                ::core::result::Result::Err(#failure) => ::core::result::Result::Err(#into_flow_error),
            };
            #outcome
        })
    };

    // `on_failure = path`: a second function, served with this one, that runs the
    // fn at `path` with `FunctionFailed<E>` for each run of this one that fails.
    // Spanned at the path: a fn of another shape is one error there.
    let failure_handler = format_ident!("__flow_failure_handler");
    let (failure_fn, failure_def) = match &args.on_failure {
        Some(path) => {
            let failure_id = format!("{id}.on_failure");
            let failed = quote_spanned! {path.span()=> ::flow::system::FunctionFailed<#event> };
            // Rebound under a call-site name spanned at the path, so that an fn
            // taking another event's failures is reported at the path.
            let arg = Ident::new("__flow_failed", path.span());
            let call = quote_spanned! {path.span()=>
                let #arg = #decoded;
                ::flow::__private::failure_handler_outcome(#path(&#ctx, #arg).await)
            };
            let boxed = quote_spanned! {path.span()=>
                ::std::boxed::Box::pin(async move {
                    let #decoded = match ::flow::__private::decode_event::<#failed>(
                        #data,
                        ::flow::system::FUNCTION_FAILED,
                    ) {
                        ::core::result::Result::Ok(event) => event,
                        ::core::result::Result::Err(problem) => {
                            return ::flow::HandlerOutcome::Failed(problem);
                        }
                    };
                    #call
                })
            };
            let function = quote! {
                #[allow(non_local_definitions)]
                impl #name {
                    #[doc(hidden)]
                    fn #failure_handler(
                        #ctx: ::flow::__private::Ctx,
                        _: ::std::string::String,
                        #data: ::flow::__private::Value,
                    ) -> ::core::pin::Pin<::std::boxed::Box<
                        dyn ::core::future::Future<Output = ::flow::HandlerOutcome> + ::core::marker::Send,
                    >> {
                        #boxed
                    }
                }
            };
            let def = quote! {
                ::core::option::Option::Some(&::flow::__private::FunctionDef {
                    id: #failure_id,
                    trigger: ::flow::system::FUNCTION_FAILED,
                    more_triggers: &[],
                    crons: &[],
                    retries: #retries,
                    backoff: #backoff,
                    handler: #name::#failure_handler,
                    location: ::core::concat!(::core::file!(), ":", ::core::line!()),
                    on_failure: ::core::option::Option::None,
                    failures_of: ::core::option::Option::Some(#id),
                    cancel_on: &[],
                    timeouts: ::flow::__private::Timeouts::NONE,
                    concurrency: &[],
                    run_concurrency: &[],
                    throttle: &[],
                    idempotency: ::core::option::Option::None,
                    priority: ::core::option::Option::None,
                    singleton: ::core::option::Option::None,
                    filter: ::core::option::Option::None,
                    rate_limit: ::core::option::Option::None,
                    grouping: ::core::option::Option::None,
                })
            };
            (function, def)
        }
        None => (quote!(), quote!(::core::option::Option::None)),
    };

    let timeout = |ms: Option<u64>| match ms {
        Some(ms) => {
            quote!(::core::option::Option::Some(::flow::__private::Duration::from_millis(#ms)))
        }
        None => quote!(::core::option::Option::None),
    };
    let (start_timeout, finish_timeout) =
        (timeout(args.timeouts.start), timeout(args.timeouts.finish));
    // Send-time rules: the expression, and the check of the fields it reads.
    let mut send_rule_checks = Vec::new();
    let mut send_rule = |rule: &Option<crate::cel::CheckedExpr>| match rule {
        Some(expr) => {
            send_rule_checks.extend(data_field_checks(expr, event));
            let lit = &expr.lit;
            quote!(::core::option::Option::Some(#lit))
        }
        None => quote!(::core::option::Option::None),
    };
    let idempotency = send_rule(&args.idempotency);
    let priority = send_rule(&args.priority);
    let filter = send_rule(&args.filter);
    let crons = args.crons.iter().map(|cron| {
        let (schedule, timezone, catch_up) = (&cron.schedule, &cron.timezone, cron.catch_up);
        quote! {
            ::flow::__private::Cron {
                schedule: #schedule,
                timezone: #timezone,
                catch_up: #catch_up,
            }
        }
    });
    let rate_limit = match &args.rate_limit {
        Some(rate) => {
            let (limit, period) = (rate.limit, rate.period);
            let key = send_rule(&rate.key);
            quote! {
                ::core::option::Option::Some(::flow::__private::RateLimit {
                    limit: #limit,
                    period: ::flow::__private::Duration::from_millis(#period),
                    key: #key,
                })
            }
        }
        None => quote!(::core::option::Option::None),
    };
    let grouping = match &args.grouping {
        Some(group) => {
            let key = send_rule(&group.key);
            let timeout = timeout(group.timeout);
            match (group.batch, group.period) {
                (Some(max_size), _) => {
                    let ms = group.timeout.unwrap_or(0);
                    quote! {
                        ::core::option::Option::Some(::flow::__private::Grouping::Batch {
                            max_size: #max_size,
                            timeout: ::flow::__private::Duration::from_millis(#ms),
                            key: #key,
                        })
                    }
                }
                (None, period) => {
                    let (period, all) = (period.unwrap_or(0), group.all);
                    quote! {
                        ::core::option::Option::Some(::flow::__private::Grouping::Debounce {
                            period: ::flow::__private::Duration::from_millis(#period),
                            timeout: #timeout,
                            key: #key,
                            all: #all,
                        })
                    }
                }
            }
        }
        None => quote!(::core::option::Option::None),
    };
    let singleton = match &args.singleton {
        Some(single) => {
            let key = send_rule(&single.key);
            let mode = match single.cancel {
                true => quote!(::flow::__private::SingletonMode::Cancel),
                false => quote!(::flow::__private::SingletonMode::Skip),
            };
            quote! {
                ::core::option::Option::Some(::flow::__private::Singleton { key: #key, mode: #mode })
            }
        }
        None => quote!(::core::option::Option::None),
    };
    let def = quote! {
        &::flow::__private::FunctionDef {
            id: #id,
            trigger: #event_lit,
            more_triggers: &[#(#more_triggers),*],
            crons: &[#(#crons),*],
            retries: #retries,
            backoff: #backoff,
            handler: #name::#handler,
            location: ::core::concat!(::core::file!(), ":", ::core::line!()),
            on_failure: #failure_def,
            failures_of: ::core::option::Option::None,
            cancel_on: __FLOW_CANCEL_ON,
            timeouts: ::flow::__private::Timeouts { start: #start_timeout, finish: #finish_timeout },
            concurrency: __FLOW_CONCURRENCY,
            run_concurrency: __FLOW_RUN_CONCURRENCY,
            throttle: __FLOW_THROTTLE,
            idempotency: #idempotency,
            priority: #priority,
            singleton: #singleton,
            filter: #filter,
            rate_limit: #rate_limit,
            grouping: #grouping,
        }
    };
    let concurrency = concurrency_rules("__FLOW_CONCURRENCY", &args.concurrency, event);
    let run_concurrency = concurrency_rules("__FLOW_RUN_CONCURRENCY", &args.run_concurrency, event);
    let throttle = throttle_rules(&args.throttle, event);
    // `cancel_on`: each field is read through the event type's accessors, spanned
    // at the user's token, so a field the event does not have is a compile error
    // there, and the name stored is the one serde writes (its renames applied).
    let cancel_on = args.cancel_on.iter().map(|c| {
        let (name, field) = (&c.event, &c.field);
        let json_name = quote_spanned! {field.span()=>
            <#event as ::flow::__private::EventFields>::FIELDS.#field.name()
        };
        quote! { ::flow::__private::CancelOn { event: #name, field: #json_name } }
    });
    let cancel_on = quote! {
        const __FLOW_CANCEL_ON: &[::flow::__private::CancelOn] = &[#(#cancel_on),*];
    };
    let with_doc = format!(
        "This function run with `event`, for `ctx.invoke(\"step-id\", {name}::with(event))`: \
         a child run whose output the invoke step returns."
    );
    // A function with several triggers is invoked by sending one of its events:
    // its handler's type names no one event to start it with.
    let with = match several {
        true => quote!(),
        false => quote! {
            #[allow(non_local_definitions)]
            impl #name {
                #[doc = #with_doc]
                #[allow(private_interfaces, dead_code)]
                #vis fn with(event: #event) -> ::flow::Invocation<#output> {
                    ::flow::__private::invocation(<Self as ::flow::Function>::DEF, event)
                }
            }
        },
    };
    // The handler the worker calls, `with` (for invoke), the `Function` impl, the
    // registration and the trigger check.
    let generated = quote! {
        #cancel_on
        #concurrency
        #run_concurrency
        #throttle
        const _: () = { #(#send_rule_checks)* };

        #[allow(non_local_definitions)]
        impl #name {
            #[doc(hidden)]
            fn #handler(
                #ctx: ::flow::__private::Ctx,
                #trigger_name: ::std::string::String,
                #data: ::flow::__private::Value,
            ) -> ::core::pin::Pin<::std::boxed::Box<
                dyn ::core::future::Future<Output = ::flow::HandlerOutcome> + ::core::marker::Send,
            >> {
                #boxed
            }
        }

        #failure_fn

        #with

        #[allow(non_local_definitions)]
        impl ::flow::Function for #name {
            const DEF: &'static ::flow::__private::FunctionDef = #def;
        }

        ::flow::__private::inventory::submit! {
            ::flow::__private::Registration(<#name as ::flow::Function>::DEF)
        }

        #name_check
    };

    // The user's fn as written, but for its `&Ctx`, which names flow's type: the
    // macro took it for flow's already, so a missing import is no error there.
    let mut item = item.clone();
    if let Some(syn::FnArg::Typed(first)) = item.sig.inputs.first_mut() {
        let span = first.ty.span();
        *first.ty = syn::parse_quote_spanned!(span=> &::flow::Ctx);
    }

    // Everything but the struct lives in the array length of its one field. An
    // attribute cannot tell a free fn from one in an `impl` block, where no struct
    // or impl may stand: there the struct is then the one item rustc refuses
    // ("struct is not supported in `trait`s or `impl`s"), instead of one error for
    // each generated item.
    quote! {
        #item

        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #vis struct #name {
            #[doc(hidden)]
            #[allow(dead_code)]
            registration: [(); {
                #generated
                0
            }],
        }
    }
}

pub fn step(item: &ItemFn, args: &StepArgs, model: &Step<'_>) -> TokenStream {
    let Step { ctx, output, error } = model;
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = item;
    let name = &sig.ident;
    let id = args
        .id
        .as_ref()
        .map(LitStr::value)
        .unwrap_or_else(|| name.to_string());
    let retries = match args.retries {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let backoff = backoff_override(&args.backoff);
    let generics = &sig.generics;
    // A generic step gets what its output and error must be as bounds of its own,
    // so its body compiles and a caller whose type falls short is told at the call.
    let mut where_clause = sig.generics.where_clause.clone();
    let generic = !generics.params.is_empty();
    if generic {
        let clause = where_clause.get_or_insert_with(|| syn::WhereClause {
            where_token: Default::default(),
            predicates: Default::default(),
        });
        clause
            .predicates
            .push(syn::parse_quote!(#output: ::flow::Storable));
        clause
            .predicates
            .push(syn::parse_quote!(#error: ::flow::StepFailure + ::core::marker::Send));
    }
    let where_clause = &where_clause;
    // A step is started from anything that `StartsSteps` (the run's `&Ctx`), which
    // a step body's `StepCtx` does not: a step called inside another step's body is
    // then one error, flow's, at the user's argument (a coercion to `dyn` reports
    // once, where a generic bound would also report at the call and its `.await`).
    let mut inputs = sig.inputs.clone();
    if let Some(syn::FnArg::Typed(first)) = inputs.first_mut() {
        let span = first.ty.span();
        *first.ty = syn::parse_quote_spanned!(span=> &dyn ::flow::StartsSteps);
    }
    // Spanned at the fn name: a step whose future is not `Send` is reported there.
    let returns = quote_spanned! {name.span()=>
        impl ::core::future::Future<Output = ::core::result::Result<#output, ::flow::__private::StepError>>
            + ::core::marker::Send
    };
    // Prefixed: the body may use any other name (`call`, `ctx2`, `event`). Not
    // mixed-site, which would move trait errors of the output type from the user's
    // tokens to the attribute.
    let call = Ident::new("__flow_call", Span::call_site());
    // Spanned at the user's output type: an output that cannot be stored is one
    // error there (the bound is `Output`, with flow's message).
    let body = Ident::new("__flow_body", Span::mixed_site());
    let run = quote_spanned! {output.span()=>
        async move { ::flow::StepCall::run::<#output, ::flow::StepError, _>(#call, #body).await }
    };
    let result = Ident::new("__flow_result", Span::mixed_site());
    // Spanned at the user's error type: an error type a step cannot fail with is
    // one error there, not several inside the generated call.
    // Call-site hygiene, so that its span joins the tokens around it (a call
    // with a mixed-site argument would be reported at the attribute); the
    // user's code never runs inside the arm that binds it.
    let failure = Ident::new("__flow_failure", error.span());
    // As for handlers: the user's error type is named once, in the body's type.
    let into_step_error = quote_spanned! {error.span()=>
        ::flow::StepFailure::into_step_error(#failure)
    };
    quote! {
        #(#attrs)*
        #vis fn #name #generics (#inputs) -> #returns #where_clause {
            let #ctx: &::flow::Ctx = ::flow::StartsSteps::starting_ctx(#ctx);
            // The key is taken now, at call time, so `join!` and spawned steps are
            // numbered in call order.
            let #call = ::flow::__private::step_call(
                #ctx,
                #id,
                ::flow::__private::StepOptions { retries: #retries, backoff: #backoff },
            );
            let #body = async move {
                // The body's `ctx`: it cannot start steps, sleep or read the journal.
                #[allow(unused_variables)]
                let #ctx = &::flow::__private::step_body_ctx(#ctx);
                let #result: ::core::result::Result<#output, #error> = async move #block.await;
                match #result {
                    ::core::result::Result::Ok(output) => ::core::result::Result::Ok(output),
                    ::core::result::Result::Err(#failure) => ::core::result::Result::Err(#into_step_error),
                }
            };
            #run
        }
    }
}

fn millis(value: Option<(u64, proc_macro2::Span)>) -> Option<TokenStream> {
    value.map(|(ms, _)| quote!(::flow::__private::Duration::from_millis(#ms)))
}

fn backoff_override(b: &Backoff) -> TokenStream {
    let opt = |t: Option<TokenStream>| match t {
        Some(t) => quote!(::core::option::Option::Some(#t)),
        None => quote!(::core::option::Option::None),
    };
    let initial = opt(millis(b.initial));
    let max = opt(millis(b.max));
    let factor = opt(b.factor.map(|f| quote!(#f)));
    let jitter = opt(b.jitter.map(|j| quote!(#j)));
    quote! {
        ::flow::__private::BackoffOverride { initial: #initial, max: #max, factor: #factor, jitter: #jitter }
    }
}

fn backoff_value(b: &Backoff) -> TokenStream {
    let over = backoff_override(b);
    quote! {
        #over.apply_const(::flow::__private::Backoff::DEFAULT)
    }
}

/// For a function with several triggers: its handler's type has a variant for
/// each trigger, and each of its variants is a trigger (compile-time assertions
/// spanned at the triggers and the type).
fn several_triggers_check(
    name: &Ident,
    ty: &syn::Type,
    first: &LitStr,
    more: &[LitStr],
) -> TokenStream {
    let type_name = quote!(#ty).to_string().replace(' ', "");
    let names = quote_spanned! {ty.span()=> <#ty as ::flow::__private::Triggers>::NAMES };
    let each = std::iter::once(first).chain(more).map(|trigger| {
        let shown = match trigger.value().strip_prefix("flow/cron.") {
            Some(_) => "cron".to_owned(),
            None => format!("event = \"{}\"", trigger.value()),
        };
        let fix = match trigger.value().starts_with("flow/cron.") {
            true => "add a variant that takes `flow::CronTick`".to_owned(),
            false => "add a variant that takes its event type (or, to a type shared by \
                      several events, its name: `#[event(name = \"...\", name = \"...\")]`)"
                .to_owned(),
        };
        quote_spanned! {trigger.span()=>
            {
                const PARTS: [&str; 8] = [
                    "#[function] `", stringify!(#name), "` is triggered by `", #shown,
                    "`, but its handler's type `", #type_name, "` does not take it: ",
                    #fix,
                ];
                const LEN: usize = ::flow::__private::concat_len(&PARTS);
                const MESSAGE: [u8; LEN] = ::flow::__private::concat::<LEN>(&PARTS);
                if !::flow::__private::has_variant(#names, #trigger) {
                    ::core::panic!("{}", ::flow::__private::as_str(&MESSAGE));
                }
            }
        }
    });
    let triggers = std::iter::once(first).chain(more);
    let every = quote_spanned! {ty.span()=>
        {
            const PARTS: [&str; 5] = [
                "a variant of `", #type_name, "` takes an event that no trigger of `",
                stringify!(#name),
                "` names: add the trigger (`event = \"...\"`, or `cron` for `flow::CronTick`), or remove the variant",
            ];
            const LEN: usize = ::flow::__private::concat_len(&PARTS);
            const MESSAGE: [u8; LEN] = ::flow::__private::concat::<LEN>(&PARTS);
            if !::flow::__private::every_variant_fires(#names, &[#(#triggers),*]) {
                ::core::panic!("{}", ::flow::__private::as_str(&MESSAGE));
            }
        }
    };
    quote! { #(#each)* #every }
}

/// The check of every field `expr` reads under `event.data`: each is read from
/// the event type's `DATA` (its fields by their JSON names), spanned at the
/// expression, so a field the event does not have is a compile error there.
fn data_field_checks(expr: &crate::cel::CheckedExpr, event: &syn::Type) -> Vec<TokenStream> {
    // At the expression: rustc reports a missing field there, and names a field
    // of a similar name (in a suggestion that rewrites the string, which shows
    // the name even though it is not the fix).
    let span = expr.lit.span();
    expr.data_fields
        .iter()
        .map(|field| {
            let ident = syn::parse_str::<syn::Ident>(field)
                .map(|i| syn::Ident::new(&i.to_string(), span))
                .unwrap_or_else(|_| syn::Ident::new_raw(field, span));
            quote_spanned! {span=>
                let _ = <#event as ::flow::__private::EventFields>::DATA.#ident;
            }
        })
        .collect()
}

/// A keyed rule's `key` (with the check of the fields it reads, pushed to
/// `checks`) and `scope`, as the `Option<&str>` and `ConcurrencyScope` that
/// `Concurrency` and `Throttle` take.
fn key_and_scope(
    key: &Option<crate::cel::CheckedExpr>,
    shared: &Option<syn::LitStr>,
    event: &syn::Type,
    checks: &mut Vec<TokenStream>,
) -> (TokenStream, TokenStream) {
    let key = match key {
        Some(key) => {
            checks.extend(data_field_checks(key, event));
            let lit = &key.lit;
            quote!(::core::option::Option::Some(#lit))
        }
        None => quote!(::core::option::Option::None),
    };
    let scope = match shared {
        Some(name) => quote!(::flow::__private::ConcurrencyScope::Shared(#name)),
        None => quote!(::flow::__private::ConcurrencyScope::Function),
    };
    (key, scope)
}

/// `__FLOW_THROTTLE`, the function's throttles, and the check of the fields their
/// keys read.
fn throttle_rules(rules: &[crate::attr::ThrottleArg], event: &syn::Type) -> TokenStream {
    let mut checks = Vec::new();
    let values: Vec<TokenStream> = rules
        .iter()
        .map(|rule| {
            let (limit, period, burst) = (rule.limit, rule.period, rule.burst);
            let (key, scope) = key_and_scope(&rule.key, &rule.shared, event, &mut checks);
            quote! {
                ::flow::__private::Throttle {
                    limit: #limit,
                    period: ::flow::__private::Duration::from_millis(#period),
                    burst: #burst,
                    key: #key,
                    scope: #scope,
                }
            }
        })
        .collect();
    quote! {
        const __FLOW_THROTTLE: &[::flow::__private::Throttle] = &[#(#values),*];
        const _: () = { #(#checks)* };
    }
}

/// `__FLOW_CONCURRENCY` (or `__FLOW_RUN_CONCURRENCY`: `name`), the function's
/// concurrency rules, and the check of every field their keys read under
/// `event.data` ([`data_field_checks`]).
fn concurrency_rules(
    name: &str,
    rules: &[crate::attr::ConcurrencyArg],
    event: &syn::Type,
) -> TokenStream {
    let name = syn::Ident::new(name, proc_macro2::Span::call_site());
    let mut checks = Vec::new();
    let values: Vec<TokenStream> = rules
        .iter()
        .map(|rule| {
            let limit = rule.limit;
            let (key, scope) = key_and_scope(&rule.key, &rule.shared, event, &mut checks);
            quote! {
                ::flow::__private::Concurrency { limit: #limit, key: #key, scope: #scope }
            }
        })
        .collect();
    quote! {
        const #name: &[::flow::__private::Concurrency] = &[#(#values),*];
        const _: () = { #(#checks)* };
    }
}
