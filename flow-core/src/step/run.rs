//! `run`: a step's body, executed once (retried on failure) and checkpointed, or
//! its recorded result on replay.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::{BodyGuard, StepCall, panic_message};
use crate::StepError;
use crate::run::core::{CURRENT_STEP, Resolution};
use crate::store::{FailedAttempt, FailureKind, Park, StepRecord, Transition};

impl StepCall {
    /// Runs the body (unless the record has the result) and checkpoints it.
    pub async fn run<T, E, Fut>(self, body: Fut) -> Result<T, StepError>
    where
        // One bound with flow's message, which the macro spans at the user's type.
        T: crate::Storable,
        E: Into<StepError>,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run_lazy(|| body).await
    }

    /// Like [`StepCall::run`], with the body made only if it runs.
    pub(crate) async fn run_lazy<T, E, F, Fut>(self, body: F) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: Into<StepError>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let failed_before = match &self.resolution {
            Resolution::Halt => return Err(self.halted().await),
            Resolution::Replay(record) => {
                return match self.replayed(record) {
                    Some(result) => result,
                    // Blocked: the handler must not see an error it could handle.
                    None => Err(self.halted().await),
                };
            }
            Resolution::Execute { failed_before } => *failed_before,
        };
        let Some(must_mark) = self.core.begin_body() else {
            return Err(self.halted().await);
        };
        let body_guard = BodyGuard(&self.core);
        let span = tracing::info_span!("flow.step", step = %self.key, attempt = failed_before + 1);
        // Instrumented, not entered: a span entered across an await leaks into
        // whatever else the thread polls.
        let outcome = self
            .execute(body, failed_before, must_mark)
            .instrument(span)
            .await;
        drop(body_guard);
        match outcome {
            Some(result) => result,
            None => Err(self.halted().await),
        }
    }

    /// Runs the body once and records what happened; `None` when the run must
    /// wait for a retry.
    async fn execute<T, E, F, Fut>(
        &self,
        body: F,
        failed_before: u32,
        must_mark: bool,
    ) -> Option<Result<T, StepError>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: Into<StepError>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let attempt = failed_before + 1;
        // The predecessor's checkpoint, if it was left for the run's next write,
        // commits before this body starts; with it, for a run whose workers were
        // lost before (rare), the note that this step is the one executing.
        if must_mark || self.core.has_unwritten() {
            let mark = Transition {
                executing: must_mark.then(|| self.key.clone()),
                ..Transition::CONTINUE
            };
            if !self.core.commit_or_stop(mark, &self.key).await {
                return None;
            }
        }
        let started_at = self.core.clock.now();
        let key = self.key.clone();
        let body =
            AssertUnwindSafe(CURRENT_STEP.scope(key, async move { body().await })).catch_unwind();
        // A body still running when its run's execution ends (only possible in a
        // task spawned off the handler: the driver drops the handler's own) stops
        // there: the lease is no longer this execution's.
        let outcome = tokio::select! {
            outcome = body => outcome,
            () = self.core.until_ended() => return None,
        };
        let finished_at = self.core.clock.now();
        let result = match outcome {
            Ok(Ok(value)) => self.encode(value),
            Ok(Err(error)) => Err(error.into()),
            Err(panic) => Err(StepError::retriable(format!(
                "step `{}` panicked: {}",
                self.key,
                panic_message(&panic)
            ))),
        };
        let error = match result {
            Ok((value, output)) => {
                let record = self.record(started_at, finished_at, attempt, Some(output), None);
                return match self.core.defer(record) {
                    Ok(()) => Some(Ok(value)),
                    Err(record) => self.write(*record).await.then_some(Ok(value)),
                };
            }
            Err(error) => error.in_step(&self.key),
        };
        let retries = self.options.retries.unwrap_or(self.core.retries);
        if error.is_fatal() || failed_before >= retries {
            tracing::warn!(error = %error, attempts = attempt, "step failed for good");
            let record = self.record(
                started_at,
                finished_at,
                attempt,
                None,
                Some(error.to_stored()),
            );
            self.write(record).await;
            return Some(Err(error));
        }
        let backoff = self.options.backoff.apply(self.core.backoff);
        let delay = error
            .retry_delay()
            .unwrap_or_else(|| backoff.delay(attempt, fastrand::f64()));
        let retry_at = crate::clock::later(finished_at, delay);
        tracing::warn!(error = %error, retry_at = %retry_at, "step failed; it will be retried");
        let failure = FailedAttempt {
            key: self.key.clone(),
            attempt,
            error: error.to_stored(),
            started_at,
            finished_at,
            retry_at,
        };
        let write = Transition {
            failure: Some(failure),
            ..Transition::CONTINUE
        };
        if self.core.commit_or_stop(write, &self.key).await {
            self.core.park(Park::retry(retry_at));
        }
        None
    }

    /// The recorded result, or `None` when the record no longer reads as `T` (the
    /// run is then blocked).
    pub(super) fn replayed<T: DeserializeOwned>(
        &self,
        record: &StepRecord,
    ) -> Option<Result<T, StepError>> {
        if let Some(error) = self.recorded_error(record) {
            return Some(Err(error));
        }
        let output = record.output.clone().unwrap_or(serde_json::Value::Null);
        match serde_path_to_error::deserialize(output) {
            Ok(value) => Some(Ok(value)),
            Err(e) => {
                let path = e.path().to_string();
                self.core.block(
                    format!(
                        "the recorded output of step `{}` no longer deserializes into `{}`{}: \
                         {}; a changed output type needs a new step id. The run is held as \
                         blocked until a worker whose code reads the record takes it up",
                        self.key,
                        std::any::type_name::<T>(),
                        super::at_path(&path),
                        e.inner()
                    ),
                    Some(&self.key),
                );
                None
            }
        }
    }

    /// Serializes an output, checks its size, and reads it back, so that a live run
    /// sees exactly what a replay will see.
    fn encode<T: Serialize + DeserializeOwned>(
        &self,
        value: T,
    ) -> Result<(T, serde_json::Value), StepError> {
        let bytes = serde_json::to_vec(&value).map_err(|e| {
            StepError::fatal(format!(
                "the output of step `{}` does not serialize: {e}",
                self.key
            ))
        })?;
        let limit = self.core.limits.step_output_bytes;
        if bytes.len() > limit {
            return Err(StepError::fatal(format!(
                "the output of step `{}` is {} bytes, over the limit of {limit} bytes \
                 (configure it with Limits::step_output_bytes)",
                self.key,
                bytes.len()
            )));
        }
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).expect("serde_json reads its own output");
        if let Some(path) = crate::limits::find_nul(&json) {
            return Err(StepError::fatal(format!(
                "the output of step `{}` holds a NUL character (\\u0000) at `{path}`, which \
                 the database cannot store; remove it or encode the bytes (for example as base64)",
                self.key
            )));
        }
        self.core.add_state_bytes(bytes.len()).map_err(|problem| {
            self.core
                .fail(FailureKind::Limit, problem.clone(), Some(&self.key));
            StepError::fatal(problem)
        })?;
        let back: T = serde_json::from_slice(&bytes).map_err(|e| {
            StepError::fatal(format!(
                "the output of step `{}` does not read back from JSON: {e}",
                self.key
            ))
        })?;
        Ok((back, json))
    }
}
