//! `sleep`: a durable sleep, recorded with its wake time; the run parks until then.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use chrono::{DateTime, Utc};

use super::first_of::{Branch, RaceEntry};
use super::{BodyGuard, StepCall};
use crate::StepError;
use crate::run::core::Resolution;
use crate::store::Park;

/// A durable sleep, made by [`Ctx::sleep`](crate::Ctx::sleep) and
/// [`Ctx::sleep_until`](crate::Ctx::sleep_until): a future, and a branch of a
/// [`first_of`](crate::Ctx::first_of) race.
#[must_use = "a sleep does nothing until it is awaited"]
pub struct Sleep {
    entry: RaceEntry,
    future: Pin<Box<dyn Future<Output = Result<(), StepError>> + Send>>,
}

impl Sleep {
    pub(crate) fn new(call: StepCall, until: DateTime<Utc>) -> Sleep {
        // It finishes at its recorded wake time (a replay keeps the first one).
        let wake_at = match &call.resolution {
            Resolution::Replay(record) => record.wake_at.unwrap_or(until),
            _ => until,
        };
        let mut entry = RaceEntry::of(&call, Some(wake_at));
        // Its record is written when it starts, not when it ends.
        entry.recorded = false;
        Sleep {
            entry,
            future: Box::pin(call.sleep(until)),
        }
    }
}

impl Future for Sleep {
    type Output = Result<(), StepError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.future.as_mut().poll(cx)
    }
}

impl Branch for Sleep {
    type Value = ();

    fn race_entry(&self) -> RaceEntry {
        self.entry.clone()
    }
}

impl StepCall {
    /// A durable sleep until `until`.
    async fn sleep(self, until: DateTime<Utc>) -> Result<(), StepError> {
        let wake_at = match &self.resolution {
            Resolution::Halt => return Err(self.halted().await),
            Resolution::Replay(record) => record.wake_at.unwrap_or(until),
            Resolution::Execute { .. } => {
                let Some(_) = self.core.begin_record() else {
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
