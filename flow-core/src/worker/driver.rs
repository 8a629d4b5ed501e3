//! Drives one claimed run: loads its checkpoints if it resumes, polls its handler,
//! and writes how it left the worker (finished, parked, handed back) as one
//! transition through the worker's group commit.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use serde_json::Value;
use tracing::Instrument;

use crate::function::HandlerOutcome;
use crate::run::core::{Decision, RunCore, Stop};
use crate::step::panic_message;
use crate::store::{ClaimedRun, Committed, Failure, FailureKind, Next, Outcome, Store, Transition};
use crate::{Ctx, FunctionDef, Limits};

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
    async {
        if claimed.resumed {
            match store.load(claimed.lease.run_id).await {
                Ok(checkpoints) => core.load(checkpoints, claimed.lost_count > 0),
                Err(e) => {
                    tracing::error!(error = %e, "could not load checkpoints; handing the run back");
                    core.end();
                    return settle(&core, End::Decided(Decision::Release)).await;
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
        // a park waits for bodies to finish); its result is not written. From here
        // on no step of this execution runs, also not from a task spawned off it.
        drop(handler);
        core.end();
        settle(&core, end).await
    }
    .instrument(span)
    .await
}

/// What the run does next, from how its handler ended; `None` when it is no
/// longer this worker's to write.
fn next_of(end: End, limits: &Limits) -> Option<(Next, Exit)> {
    let failed = |mut failure: Failure| {
        tracing::error!(error = %failure.message, kind = failure.kind.as_str(), "run failed");
        failure.message = crate::limits::storable_message(&failure.message);
        Some((Next::Finish(Outcome::Failed(failure)), Exit::Finished))
    };
    match end {
        End::Returned(HandlerOutcome::Completed(output)) => match check_output(&output, limits) {
            Ok(()) => {
                tracing::info!("run completed");
                Some((Next::Finish(Outcome::Completed(output)), Exit::Finished))
            }
            Err(failure) => failed(failure),
        },
        End::Returned(HandlerOutcome::Failed(failure)) => failed(failure),
        End::Panicked(message) => failed(Failure::new(
            FailureKind::Panic,
            format!("the handler panicked outside any step: {message}"),
        )),
        End::Decided(Decision::Stop(Stop::Fail(failure))) => failed(failure),
        End::Decided(Decision::Stop(Stop::LeaseLost)) => None,
        End::Decided(Decision::Stop(Stop::Release) | Decision::Release) => {
            tracing::info!("run handed back");
            Some((Next::Release, Exit::Released))
        }
        End::Decided(Decision::Park(park)) => {
            tracing::debug!(?park, "run parked");
            Some((Next::Park(park), Exit::Parked))
        }
    }
}

/// The handler's output is stored like a step's: within the step output limit,
/// with no NUL character.
fn check_output(output: &Value, limits: &Limits) -> Result<(), Failure> {
    let bytes = crate::run::core::json_len(output);
    if bytes > limits.step_output_bytes {
        return Err(Failure::new(
            FailureKind::Limit,
            format!(
                "the handler's output is {bytes} bytes, over the limit of {} bytes \
                 (configure it with Limits::step_output_bytes)",
                limits.step_output_bytes
            ),
        ));
    }
    if let Some(path) = crate::limits::find_nul(output) {
        return Err(Failure::new(
            FailureKind::Limit,
            format!(
                "the handler's output holds a NUL character (\\u0000) at `{path}`, which the \
                 database cannot store"
            ),
        ));
    }
    Ok(())
}

async fn settle(core: &RunCore, end: End) -> Exit {
    let Some((next, exit)) = next_of(end, &core.limits) else {
        return Exit::Dropped;
    };
    match core.commit(Transition::next(next)).await {
        Ok(Committed::Written | Committed::AlreadyRecorded(_)) => exit,
        Ok(Committed::LeaseLost) => {
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
