//! `#[derive(Triggers)]`: an enum with one variant per event a function with
//! several triggers takes, each wrapping its event type (or `flow::CronTick`).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields};

use crate::errors::Errors;

pub fn derive(input: &DeriveInput, errors: &mut Errors) -> TokenStream {
    const SHAPE: &str = "#[derive(Triggers)] is for an enum with one variant per trigger, each \
                         wrapping that trigger's event type: `enum AccountChange { \
                         Created(AccountCreated), Nightly(flow::CronTick) }`";
    let Data::Enum(data) = &input.data else {
        errors.at(&input.ident, SHAPE);
        return quote!();
    };
    if !input.generics.params.is_empty() {
        errors.at(
            &input.generics,
            "a #[derive(Triggers)] enum cannot be generic: name each variant's event type",
        );
        return quote!();
    }
    if data.variants.is_empty() {
        errors.at(&input.ident, SHAPE);
        return quote!();
    }
    let mut variants = Vec::new();
    for variant in &data.variants {
        match &variant.fields {
            Fields::Unnamed(fields) if fields.unnamed.len() == 1 => {
                variants.push((&variant.ident, &fields.unnamed[0].ty));
            }
            _ => errors.at(
                variant,
                format!(
                    "each variant of a #[derive(Triggers)] enum wraps one event type: write \
                     `{}(MyEvent)`",
                    variant.ident
                ),
            ),
        }
    }
    if variants.len() != data.variants.len() {
        return quote!();
    }
    let ident = &input.ident;
    let enum_name = ident.to_string();
    // Spanned at each variant's type: a type that is not an event is an error there.
    let names = variants.iter().map(|(_, ty)| {
        quote_spanned! {ty.span()=> <#ty as ::flow::Event>::NAME }
    });
    let arms = variants.iter().map(|(variant, ty)| {
        quote_spanned! {ty.span()=>
            if ::flow::__private::takes(<#ty as ::flow::Event>::NAME, name) {
                return ::flow::__private::decode_event::<#ty>(data, <#ty as ::flow::Event>::NAME)
                    .map(#ident::#variant);
            }
        }
    });
    let distinct = format!(
        "two variants of `{enum_name}` take the same event; keep one (a run's event picks \
         one variant)"
    );
    quote! {
        impl ::flow::Triggers for #ident {
            const NAMES: &'static [&'static str] = &[#(#names),*];

            fn decode(
                name: &str,
                data: ::flow::__private::Value,
            ) -> ::core::result::Result<Self, ::flow::Failure> {
                #(#arms)*
                ::core::result::Result::Err(::flow::__private::no_variant(name, #enum_name))
            }
        }

        const _: () = {
            if !::flow::__private::distinct_names(<#ident as ::flow::Triggers>::NAMES) {
                ::core::panic!(#distinct);
            }
        };
    }
}
