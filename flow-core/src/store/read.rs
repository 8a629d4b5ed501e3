//! The read side: what clients, the server and the dashboard look up. Apart from
//! [`Store`](super::Store), so reads can grow without widening what a worker writes.

use std::future::Future;

use crate::{Error, RunId, RunView};

/// Reading runs back. Implemented by each backend beside [`Store`](super::Store).
pub trait ReadStore: Clone + Send + Sync + 'static {
    /// A run with its steps and failed attempts.
    fn run(&self, id: RunId) -> impl Future<Output = Result<Option<RunView>, Error>> + Send;
}
