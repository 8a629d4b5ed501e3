//! Keys and tokens, kept as SHA-256 digests (the server never holds a key in the
//! clear once configured) and compared in constant time.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;

/// A set of keys, as digests.
#[derive(Clone, Default)]
pub struct Keys {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} held)", self.digests.len())
    }
}

impl Keys {
    /// The digests of `keys`.
    pub fn of<K: AsRef<str>>(keys: impl IntoIterator<Item = K>) -> Keys {
        Keys {
            digests: keys.into_iter().map(|k| digest(k.as_ref())).collect(),
        }
    }

    /// No key: every request that needs one is refused.
    pub fn none() -> Keys {
        Keys::default()
    }

    /// Whether `key` is one of them. Every digest is compared, each in constant
    /// time, so the answer's timing says nothing of which key came close.
    pub fn holds(&self, key: &str) -> bool {
        let given = digest(key);
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |found, held| {
                found | held.ct_eq(&given)
            })
            .into()
    }
}

/// A development server answers this machine only: a request from any other
/// peer, or one whose peer is unknown, is refused before it is read.
pub(crate) async fn local_only<S: Send + Sync + 'static>(
    State(state): State<Arc<AppState<S>>>,
    request: Request,
    next: Next,
) -> Response {
    if !state.config.open {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .cloned();
    match peer {
        Some(ConnectInfo(addr)) if addr.ip().is_loopback() => next.run(request).await,
        Some(ConnectInfo(addr)) => ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this is a development server, which answers only the machine it runs on, \
                 not {}; serve with keys (ServerConfig::new) to answer others",
                addr.ip()
            ),
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::FORBIDDEN,
            "this development server cannot tell where the request comes from; serve it \
             with flow_server::serve",
        )
        .into_response(),
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_held_only_as_given() {
        let keys = Keys::of(["alpha", "beta"]);
        assert!(keys.holds("alpha") && keys.holds("beta"));
        assert!(!keys.holds("alph") && !keys.holds("") && !keys.holds("gamma"));
        assert!(!Keys::none().holds(""));
        assert_eq!(format!("{keys:?}"), "Keys(2 held)");
    }
}
