//! Group commit. Every write of a worker's runs (checkpoints, failed attempts,
//! parks, hand-backs, finishes) goes through one task, which writes all that are
//! waiting in one [`Store::commit`] (one commit), while the next ones queue behind
//! it. A lone write waits for nothing but its own statement; under load, one commit
//! carries many runs' writes. Each writer still waits for its batch to commit, so a
//! step body never starts before its predecessor's checkpoint has committed.
//!
//! A batch is never held hostage by one of its rows: a transient failure (a dropped
//! connection, a serialization failure) is retried with backoff, since the step
//! results are in memory and running the bodies again would repeat their side
//! effects; any other failure is retried row by row, so only the row the database
//! refuses fails.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::store::{Committed, Lease, Store, Transition};
use crate::{Clock, Error};

/// Most transitions in one statement.
const MAX_BATCH: usize = 512;

/// The first pause before a transient failure is retried; it doubles up to
/// [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_secs(1);

struct Request {
    lease: Lease,
    transition: Transition,
    reply: oneshot::Sender<Result<Committed, Error>>,
}

/// A handle to a worker's commit task. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Committer {
    requests: mpsc::UnboundedSender<Request>,
}

impl Committer {
    /// Starts the task; it ends when every handle is dropped. Transient failures
    /// are retried for at most half a lease: by then the lease may lapse, and
    /// another worker will take the run over from its checkpoints.
    pub fn spawn<S: Store>(store: S, lease_for: Duration, clock: Arc<dyn Clock>) -> Committer {
        let (requests, incoming) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(store, incoming, lease_for, clock));
        Committer { requests }
    }

    /// Writes one transition with its run's lease; resolves once its batch committed.
    pub async fn commit(&self, lease: Lease, transition: Transition) -> Result<Committed, Error> {
        let stopped = || Error::Unavailable("the worker's commit task has stopped".into());
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request {
                lease,
                transition,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

async fn write_batches<S: Store>(
    store: S,
    mut incoming: mpsc::UnboundedReceiver<Request>,
    lease_for: Duration,
    clock: Arc<dyn Clock>,
) {
    let mut batch: Vec<(Lease, Transition)> = Vec::new();
    let mut replies: Vec<oneshot::Sender<Result<Committed, Error>>> = Vec::new();
    while let Some(first) = incoming.recv().await {
        let mut next = Some(first);
        while let Some(Request {
            lease,
            transition,
            reply,
        }) = next
        {
            batch.push((lease, transition));
            replies.push(reply);
            next = if batch.len() < MAX_BATCH {
                incoming.try_recv().ok()
            } else {
                None
            };
        }
        let results = match commit_retrying(&store, &batch, lease_for, &*clock).await {
            Ok(results) => results.into_iter().map(Ok).collect(),
            Err(e) if batch.len() > 1 && !e.is_transient() => {
                // One row may be what the database refuses: write each alone.
                tracing::warn!(error = %e, rows = batch.len(), "a batch was refused; writing its rows one by one");
                let mut results = Vec::with_capacity(batch.len());
                for one in batch.chunks(1) {
                    results.push(
                        commit_retrying(&store, one, lease_for, &*clock)
                            .await
                            .map(|mut r| r.pop().unwrap_or(Committed::LeaseLost)),
                    );
                }
                results
            }
            Err(e) => batch.iter().map(|_| Err(same_error(&e))).collect(),
        };
        for (reply, result) in replies.drain(..).zip(results) {
            let _ = reply.send(result);
        }
        batch.clear();
    }
}

/// One commit, retried with backoff while it fails transiently, for at most half
/// of `lease_for`.
async fn commit_retrying<S: Store>(
    store: &S,
    batch: &[(Lease, Transition)],
    lease_for: Duration,
    clock: &dyn Clock,
) -> Result<Vec<Committed>, Error> {
    let give_up = tokio::time::Instant::now() + lease_for / 2;
    let mut pause = FIRST_PAUSE;
    loop {
        match store.commit(batch, lease_for, clock.store_now()).await {
            Ok(results) if results.len() == batch.len() => return Ok(results),
            Ok(results) => {
                return Err(Error::Database(format!(
                    "the store answered {} results for a batch of {} transitions",
                    results.len(),
                    batch.len()
                )));
            }
            Err(e) if e.is_transient() && tokio::time::Instant::now() + pause < give_up => {
                tracing::warn!(error = %e, retry_in = ?pause, "a write failed transiently; retrying it");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Err(e) => return Err(e),
        }
    }
}

/// `Error` is not `Clone` (it may hold other errors one day); each writer of a
/// failed batch gets the same message.
fn same_error(e: &Error) -> Error {
    match e {
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        Error::Database(m) => Error::Database(m.clone()),
        other => Error::Database(other.to_string()),
    }
}
