//! Drives one claimed run: loads its checkpoints if it resumes, polls its handler,
//! and writes how it ended (finished, parked, released) with its lease.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use tracing::Instrument;

use crate::checkpointer::Checkpointer;
use crate::ctx::{Decision, RunCore, RunIo, Stop};
use crate::function::HandlerOutcome;
use crate::step::panic_message;
use crate::store::{ClaimedRun, FailedAttempt, Lease, Outcome, Park, StepRecord, Store};
use crate::{Ctx, Error, FunctionDef};

/// The store's writes for one run, fenced by its lease.
pub(crate) struct LeasedIo<S> {
    pub store: S,
    pub lease: Lease,
    /// Checkpoints go through the worker's group commit.
    pub checkpointer: Checkpointer,
}

impl<S: Store> RunIo for LeasedIo<S> {
    fn checkpoint(&self, step: StepRecord) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.checkpointer.write(self.lease.clone(), step))
    }

    fn record_failure<'a>(
        &'a self,
        attempt: &'a FailedAttempt,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.store.record_failure(&self.lease, attempt))
    }

    fn mark_step<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.store.mark_step(&self.lease, key))
    }
}

/// How a driven run left the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    Finished,
    Parked,
    Released,
    Dropped,
}

enum End {
    Returned(HandlerOutcome),
    Panicked(String),
    Decided(Decision),
}

pub(crate) async fn drive<S: Store>(
    store: S,
    core: Arc<RunCore>,
    def: &'static FunctionDef,
    claimed: ClaimedRun,
) -> Exit {
    let span = tracing::info_span!(
        "flow.run",
        function = def.id,
        run_id = %claimed.lease.run_id,
        resumed = claimed.resumed,
    );
    async move {
        let lease = claimed.lease.clone();
        if claimed.resumed {
            match store.checkpoints(lease.run_id).await {
                Ok(checkpoints) => core.load(checkpoints, claimed.lost_count > 0),
                Err(e) => {
                    tracing::error!(error = %e, "could not load checkpoints; handing the run back");
                    return settle(
                        &store,
                        &core,
                        &lease,
                        End::Decided(Decision::Stop(Stop::Release)),
                    )
                    .await;
                }
            }
        }
        let ctx = Ctx { core: core.clone() };
        // Boxed by the macro, hence Unpin: it can be dropped before the run's end is written.
        let mut handler = AssertUnwindSafe((def.handler)(ctx, claimed.event.data)).catch_unwind();
        let end = loop {
            let changed = core.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(decision) = core.decision() {
                break End::Decided(decision);
            }
            tokio::select! {
                biased;
                out = &mut handler => break match out {
                    Ok(outcome) => End::Returned(outcome),
                    Err(panic) => End::Panicked(panic_message(&panic)),
                },
                _ = &mut changed => {}
            }
        };
        // Dropping the handler drops any step body still running (only on a stop:
        // a park waits for bodies to finish); its result is not written.
        drop(handler);
        settle(&store, &core, &lease, end).await
    }
    .instrument(span)
    .await
}

async fn settle<S: Store>(store: &S, core: &RunCore, lease: &Lease, end: End) -> Exit {
    let now = core.clock.now();
    let (result, exit) = match end {
        End::Returned(HandlerOutcome::Completed(output)) => {
            tracing::info!("run completed");
            (
                store.finish(lease, &Outcome::Completed(output), now).await,
                Exit::Finished,
            )
        }
        End::Returned(HandlerOutcome::Failed(message)) => {
            tracing::error!(error = %message, "run failed");
            (
                store.finish(lease, &Outcome::Failed(message), now).await,
                Exit::Finished,
            )
        }
        End::Panicked(message) => {
            let message = format!("the handler panicked outside any step: {message}");
            tracing::error!(error = %message, "run failed");
            (
                store.finish(lease, &Outcome::Failed(message), now).await,
                Exit::Finished,
            )
        }
        End::Decided(Decision::Stop(Stop::Fail(message))) => {
            tracing::error!(error = %message, "run failed");
            (
                store.finish(lease, &Outcome::Failed(message), now).await,
                Exit::Finished,
            )
        }
        End::Decided(Decision::Stop(Stop::LeaseLost)) => return Exit::Dropped,
        End::Decided(Decision::Stop(Stop::Release))
        | End::Decided(Decision::Park(Park::Release)) => {
            tracing::info!("run handed back");
            (store.park(lease, Park::Release, now).await, Exit::Released)
        }
        End::Decided(Decision::Park(park)) => {
            tracing::debug!(?park, "run parked");
            (store.park(lease, park, now).await, Exit::Parked)
        }
    };
    match result {
        Ok(()) => exit,
        Err(Error::LeaseLost(_)) => {
            tracing::info!("lease lost before the run's end was written; another worker owns it");
            Exit::Dropped
        }
        Err(e) => {
            // The lease expires and another worker replays the run from its checkpoints.
            tracing::error!(error = %e, "could not write the run's state; its lease will expire");
            Exit::Dropped
        }
    }
}
