//! The handle a run's writes go through: a channel to its worker's group commit
//! (`worker::committer`), which answers each write once its batch has committed.
//! It lives with the run, so that a run depends on no part of the worker.

use tokio::sync::{mpsc, oneshot};

use crate::Error;
use crate::store::{Committed, Lease, Transition};

/// One write: a transition of the run holding `lease`, answered on `reply`.
pub(crate) struct WriteRequest {
    pub lease: Lease,
    pub transition: Transition,
    pub reply: oneshot::Sender<Result<Committed, Unwritten>>,
}

/// A write that failed, with its transition handed back: the run may carry its
/// checkpoints again without having kept a copy.
pub(crate) struct Unwritten {
    pub error: Error,
    /// `None` when the commit task ended before it answered (it panicked): the
    /// write is then lost as in a crash, and its steps run again on replay.
    pub transition: Option<Box<Transition>>,
}

/// A handle to a worker's commit task. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Committer {
    requests: mpsc::UnboundedSender<WriteRequest>,
}

impl Committer {
    /// A handle whose writes go to the task reading `requests`.
    pub fn new(requests: mpsc::UnboundedSender<WriteRequest>) -> Committer {
        Committer { requests }
    }

    /// Writes one transition with its run's lease; resolves once its batch
    /// committed. A failed write hands its transition back.
    pub async fn commit(
        &self,
        lease: Lease,
        transition: Transition,
    ) -> Result<Committed, Unwritten> {
        let stopped = |transition| Unwritten {
            error: Error::Unavailable("the worker's commit task has stopped".into()),
            transition,
        };
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(WriteRequest {
                lease,
                transition,
                reply,
            })
            .map_err(|refused| stopped(Some(Box::new(refused.0.transition))))?;
        answer.await.unwrap_or_else(|_| Err(stopped(None)))
    }
}
