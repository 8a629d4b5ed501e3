//! `first_of`: a race between waits (for events or signals), invokes and sleeps
//! whose winner is recorded. A branch that finished while the run was parked (its
//! record exists, or its deadline or wake time has passed) wins, the first in the
//! order given; while none has, every branch parks, and the run wakes at the first
//! of their conditions. The winner's index is the race's own record, written with
//! records that close the losers' waits (a null output, or an invoke's error), so a
//! replay returns the same winner, losers never start again, and a losing wait
//! holds no event, signal name or invoked run.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::StepCall;
use crate::run::core::Resolution;
use crate::store::{StepRecord, Transition};
use crate::{StepError, StepKind};

/// A race made by [`Ctx::first_of`](crate::Ctx::first_of): awaited, it returns
/// the output of the branch that finished first, as a [`First2`] (or `First3`,
/// `First4`) whose variant says which.
#[must_use = "a race does nothing until it is awaited"]
pub struct FirstOf<B> {
    call: StepCall,
    branches: B,
}

impl<B> FirstOf<B> {
    pub(crate) fn new(call: StepCall, branches: B) -> Self {
        FirstOf { call, branches }
    }
}

/// A step tool that can take part in a [`FirstOf`] race: a wait for an event or a
/// signal (with its timeout), an invoke, or a sleep. A step body cannot race: once
/// started it runs to its end, and no other branch can win meanwhile.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot race in `first_of`",
    label = "not a wait with its timeout, an invoke or a sleep",
    note = "a race takes waits for events or signals (each with `.timeout(..)`), invokes and \
            sleeps; a step body cannot race, since once started it runs to its end"
)]
pub trait Branch: IntoFuture<Output = Result<Self::Value, StepError>> + Send + 'static {
    /// What the branch returns when it wins.
    type Value: Send + 'static;

    /// Where the branch stands, read when the race is awaited.
    #[doc(hidden)]
    fn race_entry(&self) -> RaceEntry;
}

/// A branch's key, and when it counts as finished.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct RaceEntry {
    pub(super) key: String,
    pub(super) position: u32,
    pub(super) kind: StepKind,
    /// Its record exists (a wait resolved or timed out, an invoked run ended).
    pub(super) recorded: bool,
    /// When it finishes without a record of its own (a deadline, a wake time).
    pub(super) due: Option<DateTime<Utc>>,
}

impl RaceEntry {
    pub(super) fn of(call: &StepCall, due: Option<DateTime<Utc>>) -> RaceEntry {
        let recorded = matches!(call.resolution, Resolution::Replay(_));
        RaceEntry {
            key: call.key.clone(),
            position: call.position,
            kind: call.kind,
            recorded,
            // A halted call never finishes.
            due: due.filter(|_| !matches!(call.resolution, Resolution::Halt)),
        }
    }

    fn finished(&self, now: DateTime<Utc>) -> bool {
        self.recorded || self.due.is_some_and(|due| due <= now)
    }

    /// The record that closes it when it loses, if it holds anything open.
    fn closing_record(&self, race: &str, now: DateTime<Utc>) -> Option<StepRecord> {
        if self.recorded {
            return None;
        }
        let (output, error) = match self.kind {
            StepKind::Wait | StepKind::Signal => (Some(Value::Null), None),
            StepKind::Invoke => (
                None,
                Some(
                    StepError::fatal(format!(
                        "invoke `{}` lost the race `{race}`; the run it started goes on",
                        self.key
                    ))
                    .in_step(&self.key)
                    .to_stored(),
                ),
            ),
            _ => return None,
        };
        Some(StepRecord {
            key: self.key.clone(),
            position: self.position,
            kind: self.kind,
            output,
            error,
            attempts: 1,
            started_at: now,
            finished_at: now,
            wake_at: None,
        })
    }
}

impl StepCall {
    /// The index of the branch that wins, if one has finished: the recorded one on
    /// replay, else the first finished.
    async fn race_winner(&self, entries: &[RaceEntry]) -> Result<Option<usize>, StepError> {
        match &self.resolution {
            Resolution::Halt => Err(self.halted().await),
            Resolution::Replay(record) => {
                let winner = record
                    .output
                    .as_ref()
                    .and_then(|o| o.get("winner"))
                    .and_then(Value::as_u64)
                    .map(|w| w as usize);
                match winner {
                    Some(w) if w < entries.len() => Ok(Some(w)),
                    _ => {
                        self.core.block(
                            format!(
                                "the record of race `{}` ({}) names none of its {} branches; a \
                                 race with other branches needs a new id",
                                self.key,
                                record.output.clone().unwrap_or(Value::Null),
                                entries.len()
                            ),
                            Some(&self.key),
                        );
                        Err(self.halted().await)
                    }
                }
            }
            Resolution::Execute { .. } => {
                let now = self.core.clock.now();
                Ok(entries.iter().position(|e| e.finished(now)))
            }
        }
    }

    /// Records the winner of a race executed now, with the records that close the
    /// losers; on replay, nothing.
    async fn record_winner(&self, winner: usize, entries: &[RaceEntry]) -> Result<(), StepError> {
        if !matches!(self.resolution, Resolution::Execute { .. }) {
            return Ok(());
        }
        let now = self.core.clock.now();
        let output = json!({ "winner": winner, "key": entries[winner].key });
        let mut steps = vec![self.record(now, now, 1, Some(output), None)];
        steps.extend(
            entries
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != winner)
                .filter_map(|(_, e)| e.closing_record(&self.key, now)),
        );
        self.write_first(Transition {
            steps,
            ..Transition::CONTINUE
        })
        .await
    }
}

/// What [`Ctx::first_of`](crate::Ctx::first_of) races: a tuple of two to four
/// [`Branch`]es.
#[diagnostic::on_unimplemented(
    message = "`first_of` races a tuple of two to four branches, not `{Self}`",
    label = "not a tuple of waits, invokes and sleeps",
    note = "a race takes waits for events or signals (each with `.timeout(..)`), invokes and \
            sleeps"
)]
pub trait Race: Send + 'static {
    /// The winner: [`First2`], [`First3`] or [`First4`].
    type Winner: Send + 'static;

    #[doc(hidden)]
    fn race(
        self,
        call: StepCall,
    ) -> Pin<Box<dyn Future<Output = Result<Self::Winner, StepError>> + Send>>;
}

impl<B: Race> IntoFuture for FirstOf<B> {
    type Output = Result<B::Winner, StepError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        self.branches.race(self.call)
    }
}

macro_rules! race {
    ($(#[$doc:meta])* $First:ident; $($B:ident $v:ident $i:tt),+) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum $First<$($B),+> {
            $(
                /// The branch in this place of the tuple won, with its output.
                $B($B),
            )+
        }

        impl<$($B: Branch),+> Race for ($($B,)+)
        where
            $($B::IntoFuture: Send,)+
        {
            type Winner = $First<$($B::Value),+>;

            fn race(
                self,
                call: StepCall,
            ) -> Pin<Box<dyn Future<Output = Result<Self::Winner, StepError>> + Send>> {
                let ($($v,)+) = self;
                let entries = [$($v.race_entry()),+];
                Box::pin(async move {
                    let Some(winner) = call.race_winner(&entries).await? else {
                        // None has finished: each parks, and the run with them.
                        let _ = tokio::join!($($v.into_future()),+);
                        return Err(call.halted().await);
                    };
                    let result = match winner {
                        $($i => $v.await.map($First::$B),)+
                        _ => unreachable!("race_winner returns an index of a branch"),
                    };
                    call.record_winner(winner, &entries).await?;
                    result
                })
            }
        }
    };
}

race!(
    /// The winner of a race of two branches ([`Ctx::first_of`](crate::Ctx::first_of)).
    First2; A a 0, B b 1
);
race!(
    /// The winner of a race of three branches ([`Ctx::first_of`](crate::Ctx::first_of)).
    First3; A a 0, B b 1, C c 2
);
race!(
    /// The winner of a race of four branches ([`Ctx::first_of`](crate::Ctx::first_of)).
    First4; A a 0, B b 1, C c 2, D d 3
);
