//! The field accessors of `#[derive(Event)]`: for a struct with named fields, a
//! companion struct `<Name>Fields` with one `Field<Event, FieldType>` per field,
//! named as serde writes it in the event's JSON (its `rename` and `rename_all`
//! applied), so that a wait's `.matching(|f| f.payment_id, id)` is checked by the
//! compiler: a misspelt field or a value of another type does not compile.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Attribute, Data, DeriveInput, Fields, LitStr};

pub fn accessors(input: &DeriveInput) -> TokenStream {
    let Data::Struct(data) = &input.data else {
        return TokenStream::new();
    };
    let Fields::Named(fields) = &data.fields else {
        return TokenStream::new();
    };
    let Some(rule) = rename_all(&input.attrs) else {
        // A rule serde does not know: serde reports it; no accessors meanwhile.
        return TokenStream::new();
    };
    let ident = &input.ident;
    let vis = &input.vis;
    let fields_ident = format_ident!("{}Fields", ident);
    let data_ident = format_ident!("{}DataFields", ident);
    let mut decls = Vec::new();
    let mut values = Vec::new();
    let (mut data_decls, mut data_values) = (Vec::new(), Vec::new());
    for field in &fields.named {
        let serde = SerdeField::of(&field.attrs);
        if serde.hidden {
            continue;
        }
        let Some(name) = &field.ident else { continue };
        let json_name = serde
            .rename
            .unwrap_or_else(|| rule.apply(name.to_string().trim_start_matches("r#")));
        let (fvis, ty) = (&field.vis, &field.ty);
        decls.push(quote! { #fvis #name: ::flow::__private::Field<#ident, #ty> });
        values.push(quote! { #name: ::flow::__private::Field::new(#json_name) });
        // A JSON name that is no Rust identifier cannot be written as
        // `event.data.<name>` in CEL either (it takes `event.data["a-b"]`).
        if let Some(json_ident) = json_ident(&json_name) {
            data_decls.push(quote! { #fvis #json_ident: ::flow::__private::Field<#ident, #ty> });
            data_values.push(quote! { #json_ident: ::flow::__private::Field::new(#json_name) });
        }
    }
    let doc = format!(
        "The fields of [`{ident}`] a wait for it can match on (made by `#[derive(Event)]`)."
    );
    let data_doc = format!(
        "The fields of [`{ident}`] by their names in its JSON data, which the expressions \
         of `#[function(...)]` check `event.data.<name>` against (made by `#[derive(Event)]`)."
    );
    quote! {
        #[doc = #doc]
        #[allow(dead_code)]
        #vis struct #fields_ident { #(#decls,)* }

        #[doc = #data_doc]
        #[allow(dead_code, non_snake_case)]
        #vis struct #data_ident { #(#data_decls,)* }

        impl ::flow::__private::EventFields for #ident {
            type Fields = #fields_ident;
            const FIELDS: #fields_ident = #fields_ident { #(#values,)* };
            type Data = #data_ident;
            const DATA: #data_ident = #data_ident { #(#data_values,)* };
        }
    }
}

/// A JSON field name as a Rust identifier (raw for a keyword), if it is one.
fn json_ident(name: &str) -> Option<syn::Ident> {
    match syn::parse_str::<syn::Ident>(name) {
        Ok(ident) => Some(ident),
        Err(_) => syn::parse_str::<syn::Ident>(&format!("r#{name}")).ok(),
    }
}

/// What a field's `#[serde(...)]` says about its name in the JSON.
#[derive(Default)]
struct SerdeField {
    rename: Option<String>,
    /// Flattened or skipped: not a field of the JSON object.
    hidden: bool,
}

impl SerdeField {
    fn of(attrs: &[Attribute]) -> SerdeField {
        let mut found = SerdeField::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
            // What does not parse is serde's to report.
            let _ = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename") {
                    found.rename = serialized_name(&meta)?;
                } else if meta.path.is_ident("flatten")
                    || meta.path.is_ident("skip")
                    || meta.path.is_ident("skip_serializing")
                {
                    found.hidden = true;
                } else {
                    skip(&meta)?;
                }
                Ok(())
            });
        }
        found
    }
}

/// Reads past a serde option flow does not look at (`default`, `with = ".."`,
/// `bound(..)`), so that the ones after it are still seen.
fn skip(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        let _: syn::Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| {
            if inner.input.peek(syn::Token![=]) {
                let _: syn::Expr = inner.value()?.parse()?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// The serialized name of `rename = ".."` or `rename(serialize = "..")`.
fn serialized_name(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<Option<String>> {
    if meta.input.peek(syn::Token![=]) {
        let lit: LitStr = meta.value()?.parse()?;
        return Ok(Some(lit.value()));
    }
    let mut name = None;
    meta.parse_nested_meta(|inner| {
        let lit: LitStr = inner.value()?.parse()?;
        if inner.path.is_ident("serialize") {
            name = Some(lit.value());
        }
        Ok(())
    })?;
    Ok(name)
}

/// The container's `rename_all` rule (its serialize side), `Some(Rule::None)`
/// without one, `None` for a rule serde does not know.
fn rename_all(attrs: &[Attribute]) -> Option<Rule> {
    let mut rule = Some(Rule::None);
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename_all") {
                if let Some(name) = serialized_name(&meta)? {
                    rule = Rule::named(&name);
                }
            } else {
                skip(&meta)?;
            }
            Ok(())
        });
    }
    rule
}

/// serde's `rename_all` rules, applied to a snake_case field name.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    None,
    Lower,
    Upper,
    Pascal,
    Camel,
    Snake,
    ScreamingSnake,
    Kebab,
    ScreamingKebab,
}

impl Rule {
    fn named(name: &str) -> Option<Rule> {
        Some(match name {
            "lowercase" => Rule::Lower,
            "UPPERCASE" => Rule::Upper,
            "PascalCase" => Rule::Pascal,
            "camelCase" => Rule::Camel,
            "snake_case" => Rule::Snake,
            "SCREAMING_SNAKE_CASE" => Rule::ScreamingSnake,
            "kebab-case" => Rule::Kebab,
            "SCREAMING-KEBAB-CASE" => Rule::ScreamingKebab,
            _ => return None,
        })
    }

    fn apply(self, field: &str) -> String {
        match self {
            Rule::None | Rule::Snake => field.to_owned(),
            Rule::Lower => field.to_ascii_lowercase(),
            Rule::Upper | Rule::ScreamingSnake => field.to_ascii_uppercase(),
            Rule::Pascal | Rule::Camel => {
                let mut out = String::new();
                let mut capital = self == Rule::Pascal;
                for c in field.chars() {
                    if c == '_' {
                        capital = true;
                    } else if capital {
                        out.push(c.to_ascii_uppercase());
                        capital = false;
                    } else {
                        out.push(c);
                    }
                }
                out
            }
            Rule::Kebab => field.replace('_', "-"),
            Rule::ScreamingKebab => field.replace('_', "-").to_ascii_uppercase(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Rule;

    #[test]
    fn renames_follow_serde() {
        let cases = [
            (Rule::Camel, "payment_id", "paymentId"),
            (Rule::Pascal, "payment_id", "PaymentId"),
            (Rule::ScreamingSnake, "payment_id", "PAYMENT_ID"),
            (Rule::Kebab, "payment_id", "payment-id"),
            (Rule::ScreamingKebab, "payment_id", "PAYMENT-ID"),
            (Rule::Lower, "payment_id", "payment_id"),
            (Rule::None, "payment_id", "payment_id"),
        ];
        for (rule, field, json) in cases {
            assert_eq!(rule.apply(field), json, "{rule:?}");
        }
    }
}
