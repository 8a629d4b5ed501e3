//! The read side: what clients, the server and the dashboard look up. Apart from
//! [`Store`](super::Store), so reads can grow without widening what a worker writes.

use std::future::Future;

use super::FinishWatch;
use crate::{Error, FunctionView, RunId, RunView};

/// Reading runs back. Implemented by each backend beside [`Store`](super::Store).
pub trait ReadStore: Clone + Send + Sync + 'static {
    /// A run with its steps and failed attempts.
    fn run(&self, id: RunId) -> impl Future<Output = Result<Option<RunView>, Error>> + Send;

    /// The functions workers have announced, by id.
    fn functions(&self) -> impl Future<Output = Result<Vec<FunctionView>, Error>> + Send;

    /// A page of the runs `query` selects, newest first.
    fn runs(&self, query: &RunQuery) -> impl Future<Output = Result<RunPage, Error>> + Send;

    /// A page of the events `query` selects, newest first.
    fn events(&self, query: &EventQuery) -> impl Future<Output = Result<EventPage, Error>> + Send;

    /// A watch that resolves when `run` may have finished: a worker's commit that
    /// finishes it after this returns is announced (a read after this returns sees
    /// an earlier finish). Finishes by recovery or `settle_blocked` are not.
    /// Announcements are a hint to read again, never the answer. The default
    /// announces nothing, and waiters poll.
    fn watch_finish(&self, run: RunId) -> impl Future<Output = Result<FinishWatch, Error>> + Send {
        std::future::ready(Ok(FinishWatch::none(run)))
    }
}

/// The most runs one page of [`ReadStore::runs`] holds.
pub const MAX_RUN_PAGE: u32 = 200;

/// Which runs [`ReadStore::runs`] lists: all that match every filter given, newest
/// first, one page at a time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunQuery {
    /// Runs of this function.
    pub function: Option<String>,
    /// Runs in one of these statuses (any status when empty).
    pub statuses: Vec<crate::RunStatus>,
    /// Runs created at or after this time.
    pub created_from: Option<chrono::DateTime<chrono::Utc>>,
    /// Runs created before this time.
    pub created_to: Option<chrono::DateTime<chrono::Utc>>,
    /// Runs this event started (or joined: a batch or debounce run).
    pub event: Option<crate::EventId>,
    /// The page after the one that ended with this run ([`RunPage::next`]).
    pub after: Option<RunId>,
    /// How many runs a page holds: 1 to [`MAX_RUN_PAGE`].
    pub limit: u32,
}

/// A page of runs, newest first.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RunPage {
    /// The runs.
    pub runs: Vec<RunSummary>,
    /// Where the next page starts ([`RunQuery::after`]), when there is one.
    pub next: Option<RunId>,
}

/// A run as a list shows it: no output, steps or attempts
/// ([`ReadStore::run`] has them).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunSummary {
    /// The run's id.
    pub id: RunId,
    /// Its function.
    pub function_id: String,
    /// The event that started it (the first of a batch or debounce).
    pub event_id: crate::EventId,
    /// Where it is.
    pub status: crate::RunStatus,
    /// Its error, once failed, cancelled or skipped.
    pub error: Option<String>,
    /// When it was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When a worker first claimed it.
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When it ended.
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl RunQuery {
    /// Refuses a limit out of bounds.
    pub fn check(&self) -> Result<(), Error> {
        check_page(self.limit, "runs")
    }
}

impl RunPage {
    /// The page of `limit` runs from `rows` (read with one more than `limit`, to
    /// know whether another page follows).
    pub fn of(rows: Vec<RunSummary>, limit: u32) -> RunPage {
        let (rows, next) = page(rows, limit, |r| r.id);
        RunPage { runs: rows, next }
    }
}

/// Which events [`ReadStore::events`] lists: newest first, one page at a time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Events of this name.
    pub name: Option<String>,
    /// The page after the one that ended with this event ([`EventPage::next`]).
    pub after: Option<crate::EventId>,
    /// How many events a page holds: 1 to [`MAX_RUN_PAGE`].
    pub limit: u32,
}

/// A page of events, newest first.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct EventPage {
    /// The events.
    pub events: Vec<EventView>,
    /// Where the next page starts ([`EventQuery::after`]), when there is one.
    pub next: Option<crate::EventId>,
}

/// An event as stored.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EventView {
    /// Its id.
    pub id: crate::EventId,
    /// Its name.
    pub name: String,
    /// Its data.
    pub data: serde_json::Value,
    /// The id its producer gave it, if any.
    pub producer_id: Option<String>,
    /// When it happened.
    pub ts: chrono::DateTime<chrono::Utc>,
    /// When it was stored.
    pub received_at: chrono::DateTime<chrono::Utc>,
}

impl EventQuery {
    /// Refuses a limit out of bounds.
    pub fn check(&self) -> Result<(), Error> {
        check_page(self.limit, "events")
    }
}

impl EventPage {
    /// The page of `limit` events from `rows` (read with one more than `limit`).
    pub fn of(rows: Vec<EventView>, limit: u32) -> EventPage {
        let (rows, next) = page(rows, limit, |e| e.id);
        EventPage { events: rows, next }
    }
}

/// Refuses a page `limit` out of bounds, naming what the page holds.
fn check_page(limit: u32, what: &str) -> Result<(), Error> {
    if limit == 0 || limit > MAX_RUN_PAGE {
        return Err(Error::Config(format!(
            "a page of {what} holds 1 to {MAX_RUN_PAGE} {what}, not {limit}"
        )));
    }
    Ok(())
}

/// The first `limit` of `rows` (read with one more than `limit`) and, when more
/// followed, the id of the last kept: where the next page starts.
fn page<T, Id>(mut rows: Vec<T>, limit: u32, id: impl Fn(&T) -> Id) -> (Vec<T>, Option<Id>) {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(id) } else { None };
    (rows, next)
}
