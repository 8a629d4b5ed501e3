//! The backend chosen at run time from the database URL. Static dispatch through
//! an enum: a match per call, nothing boxed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use flow_core::store::{
    Checkpoints, ClaimRequest, ClaimedRun, Committed, Connect, FinishWatch, FunctionInfo, Lease,
    NewSignal, ReadStore, SendReceipt, Settle, SignalReceipt, Store, Transition, Wakeups,
};
use flow_core::{Error, NewEvent, Now, RunId, RunView};

/// Where data goes when DATABASE_URL is not set: a file in the working directory.
#[cfg(feature = "sqlite")]
pub const DEFAULT_SQLITE_URL: &str = "sqlite://flow.db";

/// Every backend this build of flow has.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AnyStore {
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(flow_postgres::PgStore),
    /// An embedded SQLite file.
    #[cfg(feature = "sqlite")]
    Sqlite(flow_sqlite::SqliteStore),
}

#[cfg(feature = "sqlite")]
impl From<flow_sqlite::SqliteStore> for AnyStore {
    fn from(store: flow_sqlite::SqliteStore) -> Self {
        AnyStore::Sqlite(store)
    }
}

#[cfg(feature = "postgres")]
impl From<flow_postgres::PgStore> for AnyStore {
    fn from(store: flow_postgres::PgStore) -> Self {
        AnyStore::Postgres(store)
    }
}

macro_rules! delegate {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            #[cfg(feature = "postgres")]
            AnyStore::Postgres($store) => $call,
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite($store) => $call,
        }
    };
}

impl Store for AnyStore {
    fn describe(&self) -> String {
        delegate!(self, s => s.describe())
    }

    async fn register_functions(&self, functions: &[FunctionInfo], now: Now) -> Result<(), Error> {
        delegate!(self, s => s.register_functions(functions, now).await)
    }

    async fn keep_announced(&self, functions: &[FunctionInfo], now: Now) -> Result<(), Error> {
        delegate!(self, s => s.keep_announced(functions, now).await)
    }

    async fn latest_event(&self, name: &str) -> Result<Option<DateTime<Utc>>, Error> {
        delegate!(self, s => s.latest_event(name).await)
    }

    async fn send(&self, events: Vec<NewEvent>, now: Now) -> Result<SendReceipt, Error> {
        delegate!(self, s => s.send(events, now).await)
    }

    async fn signal(&self, signal: NewSignal, now: Now) -> Result<Option<SignalReceipt>, Error> {
        delegate!(self, s => s.signal(signal, now).await)
    }

    async fn set_paused(&self, function: &str, paused: bool, now: Now) -> Result<bool, Error> {
        delegate!(self, s => s.set_paused(function, paused, now).await)
    }

    async fn claim(&self, request: ClaimRequest<'_>, now: Now) -> Result<Vec<ClaimedRun>, Error> {
        delegate!(self, s => s.claim(request, now).await)
    }

    async fn load(&self, run: RunId) -> Result<Checkpoints, Error> {
        delegate!(self, s => s.load(run).await)
    }

    async fn rerun(&self, run: RunId, now: Now) -> Result<RunId, Error> {
        delegate!(self, s => s.rerun(run, now).await)
    }

    async fn group_events(&self, run: RunId) -> Result<Vec<flow_core::StoredEvent>, Error> {
        delegate!(self, s => s.group_events(run).await)
    }

    async fn commit(
        &self,
        batch: &[(Lease, Transition)],
        lease_for: Duration,
        now: Now,
    ) -> Result<Vec<Committed>, Error> {
        delegate!(self, s => s.commit(batch, lease_for, now).await)
    }

    async fn commit_and_claim(
        &self,
        batch: &[(Lease, Transition)],
        claim: ClaimRequest<'_>,
        lease_for: Duration,
        now: Now,
    ) -> Result<(Vec<Committed>, Vec<ClaimedRun>), Error> {
        delegate!(self, s => s.commit_and_claim(batch, claim, lease_for, now).await)
    }

    async fn renew(
        &self,
        leases: &[Lease],
        lease_for: Duration,
        now: Now,
    ) -> Result<Vec<RunId>, Error> {
        delegate!(self, s => s.renew(leases, lease_for, now).await)
    }

    async fn recover_expired(&self, max_lost: u32, now: Now) -> Result<u64, Error> {
        delegate!(self, s => s.recover_expired(max_lost, now).await)
    }

    async fn settle_blocked(&self, run: RunId, settle: &Settle, now: Now) -> Result<bool, Error> {
        delegate!(self, s => s.settle_blocked(run, settle, now).await)
    }

    async fn cancel_timed_out(&self, now: Now) -> Result<u64, Error> {
        delegate!(self, s => s.cancel_timed_out(now).await)
    }

    async fn cancel(&self, run: RunId, reason: &str, now: Now) -> Result<bool, Error> {
        delegate!(self, s => s.cancel(run, reason, now).await)
    }

    async fn cancel_runs(
        &self,
        function: &str,
        created: std::ops::Range<DateTime<Utc>>,
        reason: &str,
        now: Now,
    ) -> Result<u64, Error> {
        delegate!(self, s => s.cancel_runs(function, created.clone(), reason, now).await)
    }

    async fn next_wakeup(
        &self,
        functions: &[String],
        limited: &flow_core::flow_control::Limited,
    ) -> Result<Option<DateTime<Utc>>, Error> {
        delegate!(self, s => s.next_wakeup(functions, limited).await)
    }

    async fn database_time(&self) -> Result<DateTime<Utc>, Error> {
        delegate!(self, s => s.database_time().await)
    }

    async fn detached(&self) -> Result<Self, Error> {
        Ok(match self {
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(s) => AnyStore::Postgres(s.detached().await?),
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite(s) => AnyStore::Sqlite(s.detached().await?),
        })
    }

    async fn wakeups(&self) -> Result<Wakeups, Error> {
        delegate!(self, s => s.wakeups().await)
    }
}

impl ReadStore for AnyStore {
    async fn run(&self, id: RunId) -> Result<Option<RunView>, Error> {
        delegate!(self, s => s.run(id).await)
    }

    async fn watch_finish(&self, run: RunId) -> Result<FinishWatch, Error> {
        delegate!(self, s => s.watch_finish(run).await)
    }

    async fn functions(&self) -> Result<Vec<flow_core::FunctionView>, Error> {
        delegate!(self, s => s.functions().await)
    }

    async fn runs(
        &self,
        query: &flow_core::store::RunQuery,
    ) -> Result<flow_core::store::RunPage, Error> {
        delegate!(self, s => s.runs(query).await)
    }

    async fn events(
        &self,
        query: &flow_core::store::EventQuery,
    ) -> Result<flow_core::store::EventPage, Error> {
        delegate!(self, s => s.events(query).await)
    }
}

impl Connect for AnyStore {
    async fn connect(url: &str) -> Result<Self, Error> {
        #[cfg(feature = "postgres")]
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(AnyStore::Postgres(
                flow_postgres::PgStore::connect(url).await?,
            ));
        }
        #[cfg(feature = "sqlite")]
        if url.starts_with("sqlite:") {
            return Ok(AnyStore::Sqlite(
                flow_sqlite::SqliteStore::connect(url).await?,
            ));
        }
        let scheme = url
            .split("://")
            .next()
            .filter(|_| url.contains("://"))
            .unwrap_or(url);
        let scheme = if scheme.len() > 20 { "(none)" } else { scheme };
        Err(Error::Config(format!(
            "DATABASE_URL has the scheme `{scheme}`, which this build of flow cannot open; \
             use postgres://user:password@host:5432/database or sqlite://path/to/file.db"
        )))
    }

    #[cfg(feature = "sqlite")]
    fn default_url() -> Option<String> {
        Some(DEFAULT_SQLITE_URL.to_owned())
    }
}

/// Sending events inside the caller's own PostgreSQL transaction, so they commit
/// or roll back with the caller's writes.
#[cfg(feature = "postgres")]
pub trait SendInTransaction {
    /// Sends `events` in `tx`; workers are notified when it commits.
    fn send_in<E: flow_core::IntoEvent + Send>(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        events: impl IntoIterator<Item = E> + Send,
    ) -> impl std::future::Future<Output = Result<SendReceipt, Error>> + Send;
}

#[cfg(feature = "postgres")]
impl<S: Store> SendInTransaction for flow_core::Client<S> {
    async fn send_in<E: flow_core::IntoEvent + Send>(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        events: impl IntoIterator<Item = E> + Send,
    ) -> Result<SendReceipt, Error> {
        flow_postgres::send_in(tx, events, self.limits()).await
    }
}
