//! Group commit of checkpoints. Every checkpoint of a worker's runs goes through
//! one task, which writes all that are waiting in one statement (one commit), while
//! the next ones queue behind it. A lone step waits for nothing but its own
//! statement; under load, one commit carries many steps. Each step still waits for
//! its batch to commit before it returns, so a step body never starts before its
//! predecessor's checkpoint has committed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::store::{Lease, StepRecord, Store};
use crate::{Clock, Error};

/// Most checkpoints in one statement.
const MAX_BATCH: usize = 512;

struct Request {
    lease: Lease,
    step: StepRecord,
    reply: oneshot::Sender<Result<(), Error>>,
}

/// A handle to a worker's checkpoint task. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Checkpointer {
    requests: mpsc::UnboundedSender<Request>,
}

impl Checkpointer {
    /// Starts the task; it ends when every handle is dropped.
    pub fn spawn<S: Store>(store: S, lease_for: Duration, clock: Arc<dyn Clock>) -> Checkpointer {
        let (requests, incoming) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(store, incoming, lease_for, clock));
        Checkpointer { requests }
    }

    /// Writes one checkpoint with its run's lease; resolves once its batch committed.
    pub async fn write(&self, lease: Lease, step: StepRecord) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { lease, step, reply })
            .map_err(|_| Error::Database("the worker's checkpoint task has stopped".into()))?;
        answer.await.unwrap_or_else(|_| {
            Err(Error::Database(
                "the worker's checkpoint task has stopped".into(),
            ))
        })
    }
}

async fn write_batches<S: Store>(
    store: S,
    mut incoming: mpsc::UnboundedReceiver<Request>,
    lease_for: Duration,
    clock: Arc<dyn Clock>,
) {
    let mut batch: Vec<(Lease, StepRecord)> = Vec::new();
    let mut replies: Vec<oneshot::Sender<Result<(), Error>>> = Vec::new();
    while let Some(first) = incoming.recv().await {
        let mut next = Some(first);
        while let Some(Request { lease, step, reply }) = next {
            batch.push((lease, step));
            replies.push(reply);
            next = if batch.len() < MAX_BATCH {
                incoming.try_recv().ok()
            } else {
                None
            };
        }
        match store.checkpoint(&batch, lease_for, clock.now()).await {
            Ok(written) => {
                for ((reply, (lease, _)), ok) in replies.drain(..).zip(&batch).zip(written) {
                    let _ = reply.send(if ok {
                        Ok(())
                    } else {
                        Err(Error::LeaseLost(lease.run_id))
                    });
                }
            }
            Err(e) => {
                // Every step of the batch gets the same error, without a second prefix.
                let message = match e {
                    Error::Database(message) => message,
                    other => other.to_string(),
                };
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(Error::Database(message.clone())));
                }
            }
        }
        batch.clear();
    }
}
