//! `send_event`: events sent as a step. They ride on the step's own checkpoint
//! ([`Transition::events`]), so they are stored exactly when the step is
//! recorded: a replay, a commit tried again, or a worker that lost its lease never
//! sends them a second time.

use serde_json::Value;
use uuid::Uuid;

use super::{BodyGuard, StepCall};
use crate::store::{Committed, OutgoingEvent, Transition};
use crate::{Error, EventId, NewEvent, StepError};

impl StepCall {
    /// Sends `events` (already checked against the limits, or the reason they
    /// could not be) unless the record says they were sent; returns their ids.
    pub(crate) async fn send(
        self,
        events: Result<Vec<NewEvent>, Error>,
    ) -> Result<Vec<EventId>, StepError> {
        match &self.resolution {
            super::Resolution::Halt => return Err(self.halted().await),
            super::Resolution::Replay(record) => return self.sent(record),
            super::Resolution::Execute { .. } => {}
        }
        let Some(_) = self.core.begin_body() else {
            return Err(self.halted().await);
        };
        let guard = BodyGuard(&self.core);
        let now = self.core.clock.now();
        let (record, events, result) = match events {
            Ok(events) => {
                let outgoing: Vec<OutgoingEvent> = events
                    .into_iter()
                    .map(|event| OutgoingEvent {
                        id: EventId(Uuid::now_v7()),
                        event,
                    })
                    .collect();
                let ids: Vec<EventId> = outgoing.iter().map(|e| e.id).collect();
                let output = serde_json::to_value(&ids).expect("ids serialize");
                let record = self.record(now, now, 1, Some(output), None);
                (record, outgoing, Ok(ids))
            }
            // Recorded as the step's failure, so a replay returns the same error.
            Err(e) => {
                let error = StepError::fatal(format!("step `{}` cannot send: {e}", self.key))
                    .in_step(&self.key);
                let record = self.record(now, now, 1, None, Some(error.to_stored()));
                (record, Vec::new(), Err(error))
            }
        };
        let transition = Transition {
            events,
            ..Transition::step(record)
        };
        let kept = self.core.commit_kept(transition, &self.key).await;
        drop(guard);
        match kept {
            // Recorded already means an earlier try of this same commit was kept.
            Some(Committed::Written | Committed::AlreadyRecorded(_)) => result,
            _ => Err(self.halted().await),
        }
    }

    /// What a recorded send returns: its ids, or its error.
    fn sent(&self, record: &crate::store::StepRecord) -> Result<Vec<EventId>, StepError> {
        if let Some(error) = self.recorded_error(record) {
            return Err(error);
        }
        let output = record.output.clone().unwrap_or(Value::Null);
        serde_json::from_value(output).map_err(|e| {
            StepError::fatal(format!(
                "the record of send `{}` does not read as event ids: {e}",
                self.key
            ))
            .in_step(&self.key)
        })
    }
}
