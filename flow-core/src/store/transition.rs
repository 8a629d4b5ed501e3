//! What a worker writes for the runs it leases: one [`Transition`] per run and
//! write, many of them committed together by [`Store::commit`](super::Store::commit).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{FailedAttempt, StepRecord};
use crate::RunStatus;

/// One change of a leased run: the records it adds, and what comes next. A store
/// writes it only while the lease holds; otherwise nothing of it is kept.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// Checkpoints it adds: steps that succeeded or failed for good, sleeps, clock
    /// reads. A key already recorded keeps its first record.
    pub steps: Vec<StepRecord>,
    /// A failed attempt it adds (its step will be retried).
    pub failure: Option<FailedAttempt>,
    /// Events it sends (`ctx.send_event`), with the ids the worker gave them. They
    /// are stored, start their runs and resolve their waits in the same commit,
    /// and only when the lease holds and none of [`steps`](Transition::steps) was
    /// recorded already: a commit tried again after its answer was lost, or a
    /// worker whose lease was taken, sends nothing a second time.
    pub events: Vec<OutgoingEvent>,
    /// The step the run starts executing, noted only for a run whose earlier workers
    /// were lost, so that the step can be named if the run gives up.
    pub executing: Option<String>,
    /// How many step records the run has once this commits, as far as the writer
    /// knows (never more than there are): a resumed run that loads fewer reports
    /// the missing rows. The store keeps the largest count it was given.
    pub step_count: Option<u32>,
    /// What the run does next.
    pub next: Next,
    /// For a run that goes on: whether this write extends its lease. A write that
    /// leaves the lease alone changes no indexed column of a checkpoint's run row
    /// (PostgreSQL then updates it in place, a HOT update); the worker asks for it
    /// once less than half its lease is left, and renewals do the rest.
    pub extend_lease: bool,
    /// For a park: whether other workers are told of its wake time at once (a
    /// NOTIFY in PostgreSQL, which serializes committers). A worker asks for it
    /// when the time is within its poll interval; others learn of later times at
    /// their next poll, before the run is due.
    pub announce_wake: bool,
}

impl Transition {
    /// Nothing added; the run goes on (and its lease is extended).
    pub const CONTINUE: Transition = Transition::next(Next::Continue);

    /// A transition that adds nothing and then does `next`.
    pub const fn next(next: Next) -> Transition {
        Transition {
            steps: Vec::new(),
            failure: None,
            events: Vec::new(),
            executing: None,
            step_count: None,
            next,
            extend_lease: true,
            announce_wake: true,
        }
    }

    /// A checkpoint of one step; the run goes on.
    pub fn step(record: StepRecord) -> Transition {
        Transition {
            steps: vec![record],
            ..Transition::CONTINUE
        }
    }

    /// Whether it records progress (a checkpoint or a failed attempt), which resets
    /// the count of workers lost in a row.
    pub fn is_progress(&self) -> bool {
        !self.steps.is_empty() || self.failure.is_some()
    }
}

/// An event a transition sends ([`Transition::events`]), with its id.
#[derive(Clone, Debug, PartialEq)]
pub struct OutgoingEvent {
    /// The id it is stored with, given by the worker so that the step that sends
    /// it can record it before the commit.
    pub id: crate::EventId,
    /// The event, checked against the limits.
    pub event: crate::NewEvent,
}

/// What a run does after a transition.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    /// It goes on executing on this worker (its lease is extended as
    /// [`Transition::extend_lease`] says).
    Continue,
    /// It stops executing until one of its wake conditions holds, and gives up its
    /// lease. It holds no worker slot and no memory meanwhile.
    Park(Park),
    /// It is handed back, claimable at once (its worker is shutting down, or could
    /// not go on for a reason that another attempt may not have).
    Release,
    /// It is held because its code does not replay its record; it is tried again
    /// at the block's time, or sooner when a worker announces its function.
    Block(Block),
    /// It ends.
    Finish(Outcome),
}

impl Next {
    /// What this does to the run's row: the status it takes, when it is due again,
    /// and how it ended. One place for every backend.
    pub fn run_update(&self) -> RunUpdate<'_> {
        let mut update = RunUpdate {
            status: RunStatus::Running,
            due: Due::Unchanged,
            output: None,
            failure: None,
        };
        match self {
            Next::Continue => {}
            Next::Park(park) => {
                update.status = park.status();
                // A park with no time waits for its other conditions.
                update.due = Due::At(park.wake.at.unwrap_or(DateTime::<Utc>::MAX_UTC));
            }
            Next::Release => {
                update.status = RunStatus::Queued;
                update.due = Due::Now;
            }
            Next::Block(block) => {
                update.status = RunStatus::Blocked;
                update.due = Due::At(block.retry_at);
                update.failure = Some(&block.failure);
            }
            Next::Finish(outcome) => {
                update.status = outcome.status();
                match outcome {
                    Outcome::Completed(value) => update.output = Some(value),
                    Outcome::Failed(failure) => update.failure = Some(failure),
                }
            }
        }
        update
    }

    /// When a parked run wakes, if this parks it on a time.
    pub fn wake_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Next::Park(park) => park.wake.at,
            Next::Block(block) => Some(block.retry_at),
            _ => None,
        }
    }
}

/// What a transition does to its run's row ([`Next::run_update`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunUpdate<'a> {
    /// The status the run takes.
    pub status: RunStatus,
    /// When it is due again.
    pub due: Due,
    /// The handler's output, when it completed.
    pub output: Option<&'a Value>,
    /// Why it failed, when it failed; why it is held, when it is blocked.
    pub failure: Option<&'a Failure>,
}

/// When a run is due again after a transition ([`RunUpdate::due`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// As its row says.
    Unchanged,
    /// At once: at the commit's `now`.
    Now,
    /// At this time.
    At(DateTime<Utc>),
}

/// A run held because its code does not replay its record ([`Next::Block`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// What did not replay (kind [`FailureKind::Replay`]), shown on the run.
    pub failure: Failure,
    /// When a worker tries it again, whether or not one announces its function.
    pub retry_at: DateTime<Utc>,
}

/// A run that stops executing for now.
#[derive(Clone, Debug, PartialEq)]
pub struct Park {
    /// Why: decides the status it shows meanwhile.
    pub reason: ParkReason,
    /// What wakes it.
    pub wake: WakeOn,
}

impl Park {
    /// Asleep until `at` (status `sleeping`).
    pub fn sleep(at: DateTime<Utc>) -> Park {
        Park {
            reason: ParkReason::Sleep,
            wake: WakeOn::at(at),
        }
    }

    /// Backing off until `at` before a retry (status `queued`).
    pub fn retry(at: DateTime<Utc>) -> Park {
        Park {
            reason: ParkReason::Retry,
            wake: WakeOn::at(at),
        }
    }

    /// Waiting for an event until the wait's deadline (status `waiting`).
    pub fn wait(wait: EventWait) -> Park {
        let at = wait.expires_at;
        Park {
            reason: ParkReason::Wait,
            wake: WakeOn {
                events: vec![wait],
                ..WakeOn::at(at)
            },
        }
    }

    /// Waiting for a run it invoked to end, until the invoke's deadline (status
    /// `waiting`).
    pub fn invoke(invoke: RunWait) -> Park {
        let at = invoke.expires_at;
        Park {
            reason: ParkReason::Wait,
            wake: WakeOn {
                runs: vec![invoke],
                ..WakeOn::at(at)
            },
        }
    }

    /// Waiting for a signal until the wait's deadline (status `waiting`).
    pub fn signal(wait: SignalWait) -> Park {
        let at = wait.expires_at;
        Park {
            reason: ParkReason::Wait,
            wake: WakeOn {
                signals: vec![wait],
                ..WakeOn::at(at)
            },
        }
    }

    /// The status the run shows while parked.
    pub fn status(&self) -> RunStatus {
        match self.reason {
            ParkReason::Sleep => RunStatus::Sleeping,
            ParkReason::Retry => RunStatus::Queued,
            ParkReason::Wait => RunStatus::Waiting,
        }
    }

    /// Both parks at once: the run wakes at the first of their conditions (a sleep
    /// that ends later parks again on replay), and shows as waiting while it waits
    /// for any event.
    pub fn join(self, other: Park) -> Park {
        let reason = if self.reason == ParkReason::Wait || other.reason == ParkReason::Wait {
            ParkReason::Wait
        } else {
            match (self.wake.at, other.wake.at) {
                (Some(a), Some(b)) if b < a => other.reason,
                (None, Some(_)) => other.reason,
                _ => self.reason,
            }
        };
        let at = match (self.wake.at, other.wake.at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut events = self.wake.events;
        events.extend(other.wake.events);
        let mut runs = self.wake.runs;
        runs.extend(other.wake.runs);
        let mut signals = self.wake.signals;
        signals.extend(other.wake.signals);
        Park {
            reason,
            wake: WakeOn {
                at,
                events,
                runs,
                signals,
            },
        }
    }
}

/// Why a run is parked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParkReason {
    /// `ctx.sleep` / `ctx.sleep_until`.
    Sleep,
    /// A step's backoff before its next attempt.
    Retry,
    /// `ctx.wait_for_event`, or `ctx.invoke` waiting for its run.
    Wait,
}

/// The conditions that make a parked run due again; the first one that holds wakes
/// it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct WakeOn {
    /// A time; `None` is never.
    pub at: Option<DateTime<Utc>>,
    /// Events it waits for: one that is stored (or was, since the wait began)
    /// resolves its wait and wakes the run.
    pub events: Vec<EventWait>,
    /// Runs it invoked: the end of one resolves its invoke step and wakes the run.
    pub runs: Vec<RunWait>,
    /// Signals it waits for: one sent to the name resolves its wait and wakes the
    /// run.
    pub signals: Vec<SignalWait>,
}

impl WakeOn {
    /// Wake at `time`.
    pub fn at(time: DateTime<Utc>) -> WakeOn {
        WakeOn {
            at: Some(time),
            events: Vec::new(),
            runs: Vec::new(),
            signals: Vec::new(),
        }
    }
}

/// The name under which a backend keeps an invoke's wait among the waits for
/// events (its field is `run_id`, its value the invoked run's id): no event can
/// have it, since names beginning with `flow/` are refused at send. A wait that
/// keeps its deadline across parks, and closes when its run ends, as theirs do.
pub const INVOKE_WAIT: &str = "flow/invoke";

/// An invoke's wait for the run it started ([`WakeOn::runs`]). When that run
/// ends, the store records how it ended as the invoke step's output (or error)
/// and wakes the run, in the statement that ends it; a run that is executing at
/// that moment is told at its next park, which then wakes it at once.
#[derive(Clone, Debug, PartialEq)]
pub struct RunWait {
    /// The invoke step's key.
    pub key: String,
    /// The invoke step's position in the run's order.
    pub position: u32,
    /// When the invoke times out (its step then fails).
    pub expires_at: DateTime<Utc>,
    /// The run to start, the first time the run parks on this invoke; `None` when
    /// an earlier park started it (the store then has its wait already).
    pub start: Option<NewRun>,
}

/// A run an invoke starts ([`RunWait::start`]): stored with its event in the
/// commit of the park, only while the lease holds and only if this invoke has no
/// run yet. Its event is named [`FUNCTION_INVOKED`](crate::system::FUNCTION_INVOKED),
/// so that it starts no other function and resolves no wait.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRun {
    /// The new run's id, given by the worker.
    pub run_id: crate::RunId,
    /// The function it runs.
    pub function_id: &'static str,
    /// Its event's id, given by the worker.
    pub event_id: crate::EventId,
    /// Its event's data: the invoke's payload.
    pub data: Value,
}

/// The name under which a backend keeps a signal's wait among the waits for
/// events (its field is `signal`, its value the signal's name): reserved, as
/// [`INVOKE_WAIT`] is.
pub const SIGNAL_WAIT: &str = "flow/signal";

/// A wait for a signal ([`WakeOn::signals`]), registered by the park that carries
/// it, in the park's transaction, after the signal's name is locked (so that a
/// concurrent sender sees either the wait or nothing of the park):
/// - if another run (or another wait of this run) holds an open wait on the name,
///   the store records the step's error, fatal, naming that run, and wakes the run:
///   a signal goes to one waiting run;
/// - else, if a signal was buffered under the name, the store takes the oldest,
///   records it as the step's output and wakes the run;
/// - else it registers the wait, which a sender then resolves (a wait registered
///   again keeps its deadline).
#[derive(Clone, Debug, PartialEq)]
pub struct SignalWait {
    /// The wait step's key.
    pub key: String,
    /// The wait step's position in the run's order.
    pub position: u32,
    /// The signal's name.
    pub name: String,
    /// When the wait times out (its step then returns `None`).
    pub expires_at: DateTime<Utc>,
}

/// What holds a signal's name when a run parks on it ([`SignalWait`]).
#[derive(Clone, Debug, PartialEq)]
pub enum SignalHolder {
    /// Another run's open wait.
    Run(crate::RunId),
    /// Another open wait of the parking run (its key).
    Wait(String),
}

/// The error a signal wait records when `holder` waits on its name already
/// (stored, as a step's error is): fatal, naming the holder. The same words on
/// every backend.
pub fn signal_held_error(wait: &SignalWait, holder: &SignalHolder) -> Value {
    let message = match holder {
        SignalHolder::Run(run) => format!(
            "signal wait `{}` waits on signal `{}`, which run {run} awaits already: a signal \
             goes to one waiting run, so give each run a name of its own (for example with \
             its entity's id)",
            wait.key, wait.name
        ),
        SignalHolder::Wait(key) => format!(
            "signal wait `{}` waits on signal `{}`, which wait `{key}` of this run awaits \
             already: a signal goes to one wait",
            wait.key, wait.name
        ),
    };
    crate::StepError::fatal(message)
        .in_step(&wait.key)
        .to_stored()
}

/// A wait for an event ([`WakeOn::events`]), registered by the park that carries
/// it. The store resolves it with the first matching event it stores, or with
/// one it stored already since the run's last checkpoint (less `lookback`),
/// recording that event as the wait step's output; a wait registered again (the
/// run woke for another reason) keeps the start and deadline it had.
#[derive(Clone, Debug, PartialEq)]
pub struct EventWait {
    /// The wait step's key.
    pub key: String,
    /// The wait step's position in the run's order.
    pub position: u32,
    /// The name of the awaited event.
    pub name: String,
    /// The field of the awaited event's data that must equal `value`; empty for
    /// any event of the name.
    pub field: String,
    /// The value `field` must have (JSON); `None` with an empty field.
    pub value: Option<Value>,
    /// How long before the wait began an event may have been stored and still
    /// resolve it.
    pub lookback: std::time::Duration,
    /// When the wait times out (its step then returns `None`).
    pub expires_at: DateTime<Utc>,
}

impl EventWait {
    /// The text both sides of a match are compared by: the value as canonical
    /// JSON text (the backend canonicalizes it the same way for stored events),
    /// or empty for a wait on any event of the name.
    pub fn value_json(&self) -> String {
        self.value
            .as_ref()
            .map_or_else(String::new, |v| v.to_string())
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// With the handler's output.
    Completed(Value),
    /// With an error, kept structured.
    Failed(Failure),
}

impl Outcome {
    /// The status it is stored with.
    pub fn status(&self) -> RunStatus {
        match self {
            Outcome::Completed(_) => RunStatus::Completed,
            Outcome::Failed(_) => RunStatus::Failed,
        }
    }
}

/// Why a run failed: what kind of failure, its message, and the step it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// What went wrong, for people.
    pub message: String,
    /// The step it came from, when it came from one.
    pub step: Option<String>,
}

impl Failure {
    /// A failure of this kind with this message, from no step in particular.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
            step: None,
        }
    }

    /// The same failure, coming from `step`.
    pub fn in_step(mut self, step: impl Into<String>) -> Failure {
        self.step = Some(step.into());
        self
    }
}

/// The kinds of [`Failure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The handler returned an error of its own.
    Handler,
    /// A step failed for good (retries ran out, or it was fatal) and the handler
    /// returned its error.
    Step,
    /// The handler panicked outside any step.
    Panic,
    /// The triggering event's data does not fit the handler's event type.
    Event,
    /// Replay found that the code no longer matches the record: it calls other
    /// steps, or a stored output no longer deserializes into the step's type.
    Replay,
    /// A configured limit was exceeded.
    Limit,
    /// The code used flow in a way it cannot run (a nested step, a bad step id).
    Usage,
    /// The database refused to store the run's state.
    Storage,
    /// Its workers were lost too many times in a row.
    Lost,
}

impl FailureKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Handler => "handler",
            FailureKind::Step => "step",
            FailureKind::Panic => "panic",
            FailureKind::Event => "event",
            FailureKind::Replay => "replay",
            FailureKind::Limit => "limit",
            FailureKind::Usage => "usage",
            FailureKind::Storage => "storage",
            FailureKind::Lost => "lost",
        }
    }
}

impl std::str::FromStr for FailureKind {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "handler" => FailureKind::Handler,
            "step" => FailureKind::Step,
            "panic" => FailureKind::Panic,
            "event" => FailureKind::Event,
            "replay" => FailureKind::Replay,
            "limit" => FailureKind::Limit,
            "usage" => FailureKind::Usage,
            "storage" => FailureKind::Storage,
            "lost" => FailureKind::Lost,
            other => {
                return Err(crate::Error::Database(format!(
                    "unknown failure kind `{other}`"
                )));
            }
        })
    }
}

/// What [`Store::commit`](super::Store::commit) did with one transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Committed {
    /// Written whole.
    Written,
    /// Written, except these step keys, which were recorded already: their first
    /// record stands.
    AlreadyRecorded(Vec<String>),
    /// Not written: the lease is no longer this worker's (or the run no longer runs).
    LeaseLost,
}
