//! `#[derive(Event)]`: reads `#[event(name = "...")]`, checks the name, and
//! implements `flow::Event` with `const NAME`, and the field accessors waits
//! match on (`event_fields`).

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DeriveInput, LitStr};

use crate::errors::Errors;

pub fn derive(input: &DeriveInput, errors: &mut Errors) -> TokenStream {
    // The first name is the event's; more make it a type shared by several
    // events, which a function with several triggers can take.
    let mut names: Vec<LitStr> = Vec::new();
    let mut seen_attr = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("event")) {
        seen_attr = true;
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let lit: LitStr = meta.value()?.parse().map_err(|e| {
                    syn::Error::new(e.span(), "`name` takes a string literal: write `name = \"app/user.created\"`")
                })?;
                if names.iter().any(|n| n.value() == lit.value()) {
                    errors.at(&lit, format!("the name `{}` is given twice; keep one", lit.value()));
                } else {
                    names.push(lit);
                }
                Ok(())
            } else {
                Err(meta.error("unknown key in #[event]; the only key is `name`: write `#[event(name = \"app/user.created\")]`"))
            }
        });
        if let Err(e) = result {
            errors.push(e);
        }
    }
    if !input.generics.params.is_empty() {
        errors.at(
            &input.generics,
            "an Event type cannot be generic: its name is fixed, and so is the shape of its data",
        );
    }
    let ident = &input.ident;
    let Some(name) = names.first().cloned() else {
        if !seen_attr {
            errors.at(
                &input.ident,
                "#[derive(Event)] needs the event's name: add `#[event(name = \"app/user.created\")]`",
            );
        }
        return placeholder(input);
    };
    for name in &names {
        check_name(name, errors);
    }
    if !errors.is_empty() {
        return placeholder(input);
    }
    let fields = crate::event_fields::accessors(input);
    let also = &names[1..];
    // A type of several names is a shared one: a function triggered by them all
    // takes it (flow::Triggers), each event's data read into it.
    let shared = match also.is_empty() {
        true => quote!(),
        false => quote! {
            impl ::flow::Triggers for #ident {
                const NAMES: &'static [&'static str] = &[#(#names),*];

                fn decode(
                    name: &str,
                    data: ::flow::__private::Value,
                ) -> ::core::result::Result<Self, ::flow::Failure> {
                    match <Self as ::flow::Triggers>::NAMES.contains(&name) {
                        true => ::flow::__private::decode_event::<Self>(data, #name),
                        false => ::core::result::Result::Err(
                            ::flow::__private::no_variant(name, ::core::stringify!(#ident)),
                        ),
                    }
                }
            }
        },
    };
    quote! {
        impl ::flow::__private::Event for #ident {
            const NAME: &'static str = #name;
            const ALSO: &'static [&'static str] = &[#(#also),*];
        }
        #shared
        #fields
    }
}

/// Refuses an event name that is not one, or that is flow's (`flow/`).
fn check_name(name: &LitStr, errors: &mut Errors) {
    let value = name.value();
    if let Some(problem) = name_problem(&value) {
        errors.at(name, problem);
    } else if value.starts_with("flow/") {
        // flow_core::system::check_not_reserved refuses sending one at run time; to
        // trigger on flow's own events, take `flow::system::FunctionFailed` and kin.
        errors.at(
            name,
            format!(
                "event name `{value}` begins with `flow/`, which is reserved for the events \
                 flow sends itself; give it your application's prefix, such as \"app/\" (to \
                 run when a run ends, take `flow::system::FunctionFinished`, `FunctionFailed` \
                 or `FunctionCancelled` as the event)"
            ),
        );
    }
}

/// What is wrong with an event name, if anything: the same rule as
/// flow_core::check_name, which checks names given at run time (flow-macros cannot
/// call flow-core). Names beginning `flow/` are each caller's to refuse, in its
/// own words.
pub fn name_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        Some("an event name cannot be empty; use a name like \"app/user.created\"".into())
    } else if value.chars().any(char::is_whitespace) {
        Some(format!(
            "event name `{value}` contains whitespace; use a name like \"app/user.created\""
        ))
    } else if value.chars().any(char::is_control) {
        Some(
            "an event name cannot contain control characters; use a name like \"app/user.created\""
                .into(),
        )
    } else if value.starts_with('/') || value.ends_with('/') {
        Some(format!(
            "event name `{value}` starts or ends with `/`; `/` separates the parts of a \
             name, as in \"app/user.created\""
        ))
    } else if value.len() > 256 {
        Some(format!(
            "event name is {} bytes long; the limit is 256",
            value.len()
        ))
    } else {
        None
    }
}

/// After an error, the type still implements `Event` (with a name `#[function]`
/// knows not to compare), so the mistake is reported once, not at every use.
fn placeholder(input: &DeriveInput) -> TokenStream {
    if !input.generics.params.is_empty() {
        return TokenStream::new();
    }
    let ident = &input.ident;
    let fields = crate::event_fields::accessors(input);
    quote! {
        impl ::flow::__private::Event for #ident {
            const NAME: &'static str = ::flow::__private::INVALID_EVENT_NAME;
        }
        #fields
    }
}
