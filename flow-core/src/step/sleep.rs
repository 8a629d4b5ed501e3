//! `sleep`: a durable sleep, recorded with its wake time; the run parks until then.

use chrono::{DateTime, Utc};

use super::{BodyGuard, StepCall};
use crate::StepError;
use crate::run::core::Resolution;
use crate::store::Park;

impl StepCall {
    /// A durable sleep until `until`.
    pub(crate) async fn sleep(self, until: DateTime<Utc>) -> Result<(), StepError> {
        let wake_at = match &self.resolution {
            Resolution::Halt => return Err(self.halted().await),
            Resolution::Replay(record) => record.wake_at.unwrap_or(until),
            Resolution::Execute { .. } => {
                let Some(_) = self.core.begin_body() else {
                    return Err(self.halted().await);
                };
                let guard = BodyGuard(&self.core);
                let now = self.core.clock.now();
                let mut record = self.record(now, now, 1, None, None);
                record.wake_at = Some(until);
                let written = self.write(record).await;
                drop(guard);
                if !written {
                    return Err(self.halted().await);
                }
                until
            }
        };
        if wake_at <= self.core.clock.now() {
            return Ok(());
        }
        self.core.park(Park::sleep(wake_at));
        Err(self.halted().await)
    }
}
