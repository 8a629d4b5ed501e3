//! Drives one claimed run: loads its checkpoints if it resumes, polls its handler,
//! and writes how it left the worker (finished, parked, handed back) as one
//! transition through the worker's group commit.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use serde_json::Value;
use tracing::Instrument;

use crate::clock::later;
use crate::function::HandlerOutcome;
use crate::run::core::{Decision, RunCore, Stop};
use crate::step::panic_message;
use crate::store::{
    Block, ClaimedRun, Committed, FailedAttempt, Failure, FailureKind, HANDLER_KEY, Next, Outcome,
    Park, Store, Transition,
};
use crate::{Ctx, FunctionDef, Limits, StepError};

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
    /// The handler's own code failed and will be tried again.
    Retry(FailedAttempt),
}

/// An error or panic of the handler's own code: tried again with the function's
/// retry policy while retries remain (the body replays from its checkpoints, so no
/// completed step runs again), else the run fails with it.
fn retry_or_fail(core: &RunCore, failure: Failure, started_at: DateTime<Utc>) -> End {
    let failed_before = core.failed_before(HANDLER_KEY);
    if failed_before >= core.retries {
        return End::Returned(HandlerOutcome::Failed(failure));
    }
    let attempt = failed_before + 1;
    let finished_at = core.clock.now();
    let retry_at = later(finished_at, core.backoff.delay(attempt, fastrand::f64()));
    tracing::warn!(error = %failure.message, %retry_at, attempt, "the handler failed; it will be retried");
    End::Retry(FailedAttempt {
        key: HANDLER_KEY.to_owned(),
        attempt,
        error: StepError::retriable(&failure.message).to_stored(),
        started_at,
        finished_at,
        retry_at,
    })
}

/// A run whose stored `what` (checkpoints, events) could not be read before its
/// handler began: handed back when the error is transient, else failed (handing
/// it back would only read the same rows again, forever).
async fn unreadable(core: &RunCore, what: &str, e: crate::Error) -> Exit {
    core.end();
    if e.is_transient() {
        tracing::error!(error = %e, "could not read the run's {what}; handing the run back");
        return settle(core, End::Decided(Decision::Release), 0).await;
    }
    let failure = Failure::new(
        FailureKind::Storage,
        format!("flow could not read this run's {what}: {e}"),
    );
    settle(core, End::Decided(Decision::Stop(Stop::Fail(failure))), 0).await
}

/// What a grouped run's handler takes: the data of every event of its group (a
/// `Vec`), or of the last. A run whose group key did not evaluate when its event
/// was sent is a group of that one event.
fn group_input(
    grouping: crate::grouping::Grouping,
    event: crate::StoredEvent,
    mut events: Vec<crate::StoredEvent>,
) -> serde_json::Value {
    if events.is_empty() {
        events.push(event);
    }
    if grouping.delivers_all() {
        serde_json::Value::Array(events.into_iter().map(|e| e.data).collect())
    } else {
        events.pop().map(|e| e.data).unwrap_or_default()
    }
}

pub(crate) async fn drive<S: Store>(
    store: S,
    core: Arc<RunCore>,
    def: &'static FunctionDef,
    mut claimed: ClaimedRun,
) -> Exit {
    let span = tracing::info_span!(
        "flow.run",
        function = def.id,
        run_id = %claimed.lease.run_id,
        resumed = claimed.resumed,
    );
    async {
        if claimed.resumed {
            let loaded = match claimed.checkpoints.take() {
                Some(checkpoints) => Ok(checkpoints),
                None => store.load(claimed.lease.run_id).await,
            };
            match loaded {
                Ok(checkpoints) => {
                    core.load(checkpoints, claimed.lost_count > 0, claimed.step_count)
                }
                Err(e) => return unreadable(&core, "checkpoints", e).await,
            }
        }
        let name = claimed.event.name.clone();
        let input = match def.grouping {
            None => claimed.event.data,
            Some(grouping) => match store.group_events(claimed.lease.run_id).await {
                Ok(events) => group_input(grouping, claimed.event, events),
                Err(e) => return unreadable(&core, "events", e).await,
            },
        };
        let started_at = core.clock.now();
        // The event is part of what the run stores.
        if let Err(problem) = core.add_state_bytes(crate::run::core::json_len(&input)) {
            core.fail(FailureKind::Limit, problem, None);
        }
        if let Some(problem) = claimed.key_problem.take() {
            core.fail(FailureKind::Event, problem, None);
        }
        let ctx = Ctx { core: core.clone() };
        // Boxed by the macro, hence Unpin: it can be dropped before the run's end is written.
        let mut handler = Flushing::new(
            AssertUnwindSafe((def.handler)(ctx, name, input)).catch_unwind(),
            core.clone(),
        );
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
        let end = match end {
            End::Returned(HandlerOutcome::Retry(failure)) => {
                retry_or_fail(&core, failure, started_at)
            }
            End::Panicked(message) => retry_or_fail(
                &core,
                Failure::new(
                    FailureKind::Panic,
                    format!("the handler panicked outside any step: {message}"),
                ),
                started_at,
            ),
            other => other,
        };
        settle(&core, end, claimed.blocked_count).await
    }
    .instrument(span)
    .await
}

/// The handler, polled as its run's ([`RunCore::poll_handler`]): whenever it waits
/// with checkpoints left for the run's next write (a step returned and the handler
/// went on to await something that is not a step), they are written before it is
/// polled again. So a checkpoint waits on no code the engine does not control.
struct Flushing<F> {
    handler: F,
    core: Arc<RunCore>,
    flush: Option<Pin<Box<dyn Future<Output = bool> + Send>>>,
}

impl<F> Flushing<F> {
    fn new(handler: F, core: Arc<RunCore>) -> Self {
        Flushing {
            handler,
            core,
            flush: None,
        }
    }
}

impl<F: Future + Unpin> Future for Flushing<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        if let Some(flush) = &mut this.flush {
            // A refused write stops the run; the driver sees it in the core.
            ready!(flush.as_mut().poll(cx));
            this.flush = None;
        }
        let polled = this.core.poll_handler(&mut this.handler, cx);
        if polled.is_pending() && this.core.has_unwritten() {
            let core = this.core.clone();
            let mut flush: Pin<Box<dyn Future<Output = bool> + Send>> =
                Box::pin(async move { core.flush().await });
            if flush.as_mut().poll(cx).is_pending() {
                this.flush = Some(flush);
            }
        }
        polled
    }
}

/// How long a blocked run waits before a worker tries it again (unless one announces
/// its function first): a minute, doubling with each block in a row, at most six
/// hours. Trying costs a replay and no step body.
fn blocked_retry(blocked_before: u32) -> Duration {
    let max = Duration::from_secs(6 * 3600);
    Duration::from_secs(60)
        .checked_mul(1u32.checked_shl(blocked_before).unwrap_or(u32::MAX))
        .map_or(max, |d| d.min(max))
}

/// What the run does next, from how its handler ended; `None` when it is no
/// longer this worker's to write.
fn transition_of(end: End, core: &RunCore, blocked_before: u32) -> Option<(Transition, Exit)> {
    let limits = &core.limits;
    let failed = |mut failure: Failure| {
        tracing::error!(error = %failure.message, kind = failure.kind.as_str(), "run failed");
        failure.message = crate::limits::storable_message(&failure.message);
        Some((
            Transition::next(Next::Finish(Outcome::Failed(failure))),
            Exit::Finished,
        ))
    };
    match end {
        End::Returned(HandlerOutcome::Completed(output)) => match check_output(&output, limits) {
            Ok(()) => {
                tracing::info!("run completed");
                Some((
                    Transition::next(Next::Finish(Outcome::Completed(output))),
                    Exit::Finished,
                ))
            }
            Err(failure) => failed(failure),
        },
        End::Returned(HandlerOutcome::Failed(failure) | HandlerOutcome::Retry(failure)) => {
            failed(failure)
        }
        End::Panicked(message) => failed(Failure::new(
            FailureKind::Panic,
            format!("the handler panicked outside any step: {message}"),
        )),
        End::Retry(attempt) => {
            let park = Park::retry(attempt.retry_at);
            Some((
                Transition {
                    failure: Some(attempt),
                    ..Transition::next(Next::Park(park))
                },
                Exit::Parked,
            ))
        }
        End::Decided(Decision::Stop(Stop::Fail(failure))) => failed(failure),
        End::Decided(Decision::Stop(Stop::Block(mut failure))) => {
            let retry_at = later(core.clock.now(), blocked_retry(blocked_before));
            tracing::error!(
                error = %failure.message,
                %retry_at,
                "the run does not replay; it is held as blocked"
            );
            failure.message = crate::limits::storable_message(&failure.message);
            Some((
                Transition::next(Next::Block(Block { failure, retry_at })),
                Exit::Parked,
            ))
        }
        End::Decided(Decision::Stop(Stop::LeaseLost)) => None,
        End::Decided(Decision::Stop(Stop::Release) | Decision::Release) => {
            tracing::info!("run handed back");
            Some((Transition::next(Next::Release), Exit::Released))
        }
        End::Decided(Decision::Park(park)) => {
            tracing::debug!(?park, "run parked");
            Some((Transition::next(Next::Park(park)), Exit::Parked))
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

async fn settle(core: &RunCore, end: End, blocked_before: u32) -> Exit {
    let Some((transition, exit)) = transition_of(end, core, blocked_before) else {
        return Exit::Dropped;
    };
    match core.commit(transition).await {
        Ok(Committed::Written | Committed::AlreadyRecorded(_)) => exit,
        Ok(Committed::LeaseLost) => {
            tracing::info!("lease lost before the run's end was written; another worker owns it");
            Exit::Dropped
        }
        Err(e) if e.is_transient() => {
            // The lease expires and another worker replays the run from its checkpoints.
            tracing::error!(error = %e, "could not write the run's state; its lease will expire");
            Exit::Dropped
        }
        Err(e) => {
            // Refused: writing it again would be refused again, on every worker. The
            // run fails, once, naming the checkpoint refused (or its end).
            let failure = core.refusal(&e, None);
            tracing::error!(error = %failure.message, "the database refused the run's end; the run fails");
            let failed = Transition::next(Next::Finish(Outcome::Failed(failure)));
            match core.commit(failed).await {
                Ok(Committed::Written | Committed::AlreadyRecorded(_)) => Exit::Finished,
                Ok(Committed::LeaseLost) => Exit::Dropped,
                Err(e) => {
                    tracing::error!(error = %e, "could not write the run's failure; its lease will expire");
                    Exit::Dropped
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_runs_are_retried_after_a_minute_doubling_to_six_hours() {
        assert_eq!(blocked_retry(0), Duration::from_secs(60));
        assert_eq!(blocked_retry(1), Duration::from_secs(120));
        assert_eq!(blocked_retry(9), Duration::from_secs(6 * 3600));
        assert_eq!(blocked_retry(u32::MAX), Duration::from_secs(6 * 3600));
    }
}
