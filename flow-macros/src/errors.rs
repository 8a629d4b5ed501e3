//! Collects every mistake in one macro input, so they are all reported at once.

use proc_macro2::TokenStream;

#[derive(Default)]
pub struct Errors(Vec<syn::Error>);

impl Errors {
    pub fn push(&mut self, error: syn::Error) {
        self.0.push(error);
    }

    pub fn at(&mut self, span: impl syn::spanned::Spanned, message: impl std::fmt::Display) {
        self.0.push(syn::Error::new(span.span(), message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The errors as `compile_error!`s.
    pub fn to_compile_errors(&self) -> TokenStream {
        self.0.iter().map(syn::Error::to_compile_error).collect()
    }
}
