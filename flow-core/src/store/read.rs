//! The read side: what clients, the server and the dashboard look up. Apart from
//! [`Store`](super::Store), so reads can grow without widening what a worker writes.

use std::future::Future;

use super::FinishWatch;
use crate::{Error, FunctionView, RunId, RunView};

/// Reading runs back. Implemented by each backend beside [`Store`](super::Store).
pub trait ReadStore: Clone + Send + Sync + 'static {
    /// A run with its steps and failed attempts.
    fn run(&self, id: RunId) -> impl Future<Output = Result<Option<RunView>, Error>> + Send;

    /// The functions workers have announced, by id.
    fn functions(&self) -> impl Future<Output = Result<Vec<FunctionView>, Error>> + Send;

    /// A watch that resolves when `run` may have finished: a worker's commit that
    /// finishes it after this returns is announced (a read after this returns sees
    /// an earlier finish). Finishes by recovery or `settle_blocked` are not.
    /// Announcements are a hint to read again, never the answer. The default
    /// announces nothing, and waiters poll.
    fn watch_finish(&self, run: RunId) -> impl Future<Output = Result<FinishWatch, Error>> + Send {
        std::future::ready(Ok(FinishWatch::none(run)))
    }
}
