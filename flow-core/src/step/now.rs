//! `now`: a journaled clock reading, the same on every replay.

use chrono::{DateTime, Utc};

use super::{BodyGuard, StepCall};
use crate::run::core::Resolution;

impl StepCall {
    /// A journaled clock reading.
    pub(crate) async fn now(self) -> DateTime<Utc> {
        match &self.resolution {
            Resolution::Halt => self.halted_clock().await,
            Resolution::Replay(record) => {
                match record
                    .output
                    .as_ref()
                    .map(|o| serde_json::from_value(o.clone()))
                {
                    Some(Ok(time)) => time,
                    _ => {
                        self.core.block(
                            format!(
                                "the record of `{}` holds no time; was it written by another kind of step?",
                                self.key
                            ),
                            Some(&self.key),
                        );
                        self.halted_clock().await
                    }
                }
            }
            Resolution::Execute { .. } => {
                let Some(_) = self.core.begin_body() else {
                    return self.halted_clock().await;
                };
                let guard = BodyGuard(&self.core);
                let now = self.core.clock.now();
                let output = serde_json::to_value(now).expect("timestamps serialize");
                let record = self.record(now, now, 1, Some(output), None);
                let written = self.write(record).await;
                drop(guard);
                if !written {
                    return self.halted_clock().await;
                }
                now
            }
        }
    }

    /// [`StepCall::halted`] for `ctx.now()`, which has no error: once the execution
    /// has ended it returns the clock's reading, recorded nowhere.
    async fn halted_clock(&self) -> DateTime<Utc> {
        self.core.until_ended().await;
        self.core.clock.now()
    }
}
