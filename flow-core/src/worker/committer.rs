//! Group commit. Every write of a worker's runs (checkpoints, failed attempts,
//! parks, hand-backs, finishes) goes through one task, which writes all that are
//! waiting in one [`Store::commit`] (one commit), while the next ones queue behind
//! it. A lone write waits for nothing but its own statement; under load, one commit
//! carries many runs' writes. Each writer still waits for its batch to commit, so a
//! step body never starts before its predecessor's checkpoint has committed.
//!
//! While the worker has free slots and runs were due at its last look, a commit
//! also claims runs to fill them ([`Store::commit_and_claim`]): under load the
//! runs that replace finished ones cost no statement of their own. The claimed
//! runs go to the claim loop, which drives them.
//!
//! A batch is never held hostage by one of its rows: a transient failure (a dropped
//! connection, a serialization failure) is retried with backoff, since the step
//! results are in memory and running the bodies again would repeat their side
//! effects; any other failure is retried row by row, so only the row the database
//! refuses fails.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::Shared;
use crate::run::writes::{Committer, Unwritten, WriteRequest};
use crate::store::{ClaimRequest, ClaimedRun, Committed, Lease, Next, Store, Transition};
use crate::{Clock, Error};

/// Most transitions in one statement.
const MAX_BATCH: usize = 512;

/// The first pause before a transient failure is retried; it doubles up to
/// [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Starts the task and returns its handle; the task ends when every handle is
/// dropped. Transient failures are retried for at most half a lease: by then the
/// lease may lapse, and another worker will take the run over from its checkpoints.
pub(super) fn spawn<S: Store>(shared: Arc<Shared<S>>) -> Committer {
    let (requests, incoming) = mpsc::unbounded_channel();
    tokio::spawn(write_batches(shared, incoming));
    Committer::new(requests)
}

async fn write_batches<S: Store>(
    shared: Arc<Shared<S>>,
    mut incoming: mpsc::UnboundedReceiver<WriteRequest>,
) {
    let functions = shared.registry.unlimited_ids();
    let lease_for = shared.config.lease;
    let mut batch: Vec<(Lease, Transition)> = Vec::new();
    let mut replies: Vec<oneshot::Sender<Result<Committed, Unwritten>>> = Vec::new();
    while let Some(first) = incoming.recv().await {
        shared.committing.store(true, Ordering::SeqCst);
        let mut next = Some(first);
        while let Some(WriteRequest {
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
        // Slots to fill, reserved so that the claim loop does not fill them too.
        let slots = if shared.more_due.load(Ordering::SeqCst) && !shared.is_shutting_down() {
            shared.reserve(usize::MAX)
        } else {
            0
        };
        let claimed_at = shared.clock.now();
        let claim = (slots > 0).then(|| ClaimRequest {
            owner: &shared.owner,
            functions: &functions,
            limited: shared.registry.limited(),
            max: slots,
            lease: lease_for,
        });
        let (results, claimed) = match commit_retrying(
            &shared.store,
            &batch,
            claim,
            lease_for,
            &*shared.clock,
        )
        .await
        {
            Ok((results, claimed)) => (results.into_iter().map(Ok).collect(), Some(claimed)),
            Err(e) if batch.len() > 1 && !e.is_transient() => {
                // One row may be what the database refuses: write each alone.
                tracing::warn!(error = %e, rows = batch.len(), "a batch was refused; writing its rows one by one");
                let mut results = Vec::with_capacity(batch.len());
                for one in batch.chunks(1) {
                    results.push(
                        commit_retrying(&shared.store, one, None, lease_for, &*shared.clock)
                            .await
                            .map(|(mut r, _)| r.pop().unwrap_or(Committed::LeaseLost)),
                    );
                }
                (results, None)
            }
            Err(e) => (batch.iter().map(|_| Err(same_error(&e))).collect(), None),
        };
        // Nothing claimed when the commit failed: whether runs are due is unknown.
        let got = claimed.as_ref().map_or(0, Vec::len);
        if slots > 0 {
            shared.unreserve(slots - got);
            shared
                .more_due
                .store(claimed.is_none() || got == slots, Ordering::SeqCst);
        }
        if let Some(claimed) = claimed {
            shared.hand_over(claimed, claimed_at);
            // A shutdown that began meanwhile may have missed them: whoever takes
            // them first (this task, or the shutdown) sees them handed back.
            if shared.is_shutting_down() {
                release(&shared, shared.take_handed()).await;
            }
        }
        for ((reply, result), (_, transition)) in
            replies.drain(..).zip(results).zip(batch.drain(..))
        {
            let _ = reply.send(result.map_err(|error| Unwritten {
                error,
                transition: Some(Box::new(transition)),
            }));
        }
        // A slot freed while this commit ran was left to it (see
        // `Shared::slot_freed`): with no commit to follow, the claim loop fills it.
        shared.committing.store(false, Ordering::SeqCst);
        if incoming.is_empty() && shared.free_slots() > 0 && shared.more_due.load(Ordering::SeqCst)
        {
            shared.wake_now();
        }
    }
}

/// Hands back runs claimed by a commit after the worker began to shut down.
async fn release<S: Store>(
    shared: &Shared<S>,
    runs: Vec<(ClaimedRun, chrono::DateTime<chrono::Utc>)>,
) {
    if runs.is_empty() {
        return;
    }
    let released: Vec<(Lease, Transition)> = runs
        .into_iter()
        .map(|(run, _)| (run.lease, Transition::next(Next::Release)))
        .collect();
    shared.unreserve(released.len());
    let lease_for = shared.config.lease;
    if let Err(e) = commit_retrying(&shared.store, &released, None, lease_for, &*shared.clock).await
    {
        tracing::warn!(error = %e, runs = released.len(), "could not hand back runs claimed during shutdown; their leases will expire");
    }
}

/// One commit (with a claim, if given), retried with backoff while it fails
/// transiently, for at most half of `lease_for`.
async fn commit_retrying<S: Store>(
    store: &S,
    batch: &[(Lease, Transition)],
    claim: Option<ClaimRequest<'_>>,
    lease_for: Duration,
    clock: &dyn Clock,
) -> Result<(Vec<Committed>, Vec<ClaimedRun>), Error> {
    let give_up = tokio::time::Instant::now() + lease_for / 2;
    let mut pause = FIRST_PAUSE;
    loop {
        let now = clock.store_now();
        let answer = match &claim {
            Some(claim) => {
                store
                    .commit_and_claim(batch, claim.clone(), lease_for, now)
                    .await
            }
            None => store
                .commit(batch, lease_for, now)
                .await
                .map(|results| (results, Vec::new())),
        };
        match answer {
            Ok((results, claimed)) if results.len() == batch.len() => {
                return Ok((results, claimed));
            }
            Ok((results, _)) => {
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
