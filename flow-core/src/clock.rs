//! Time, injected: workers read it from a [`Clock`], so sleeps, leases and backoff
//! are testable without waiting. In production the times that queries compare are
//! the database's own ([`Now::Database`]): one clock rules every machine.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// `t + d`, saturating at the latest representable time instead of panicking
/// (a sleep of `Duration::MAX` is a sleep until the end of time).
pub fn later(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The time a store query compares against (due times, lease expiry, the dedupe
/// window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Now {
    /// The database's own clock: every worker, however skewed its machine, sees
    /// the same time, so none takes a live lease or wakes a sleep early.
    Database,
    /// This time, from a test clock that moves only when told.
    At(DateTime<Utc>),
}

impl Now {
    /// The time given, or, for [`Now::Database`], this machine's clock: for a
    /// store whose database lives on this machine (SQLite).
    pub fn or_local(self) -> DateTime<Utc> {
        match self {
            Now::Database => Utc::now(),
            Now::At(at) => at,
        }
    }

    /// The time given, `None` for the database's own.
    pub fn at(self) -> Option<DateTime<Utc>> {
        match self {
            Now::Database => None,
            Now::At(at) => Some(at),
        }
    }
}

impl From<DateTime<Utc>> for Now {
    fn from(at: DateTime<Utc>) -> Self {
        Now::At(at)
    }
}

/// A source of time for workers.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
    /// Resolves once [`Clock::now`] has reached `deadline`.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    /// What store queries compare against. By default this clock's reading, so a
    /// test clock drives every due time and lease; a clock that reads the machine
    /// answers [`Now::Database`], and a worker then keeps its readings in step
    /// with the database's clock.
    fn store_now(&self) -> Now {
        Now::At(self.now())
    }
}

/// The machine's clock. Queries compare the database's own time, and a worker
/// corrects its readings by the database's clock, so machines whose clocks
/// disagree still agree on every lease and due time.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn store_now(&self) -> Now {
        Now::Database
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let wait = (deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when told: tests advance it past a sleep or a backoff
/// instead of waiting.
///
/// ```
/// # use flow_core::{Clock, ManualClock};
/// let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
/// clock.advance(std::time::Duration::from_secs(86_400));
/// assert_eq!(clock.now().to_rfc3339(), "2026-01-02T00:00:00+00:00");
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
    ticks: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        let (ticks, _) = watch::channel(start);
        ManualClock {
            now: Arc::new(Mutex::new(start)),
            ticks,
        }
    }

    /// Moves the clock forward and wakes every sleeper whose deadline has passed.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().expect("clock lock");
        *now = later(*now, by);
        self.ticks.send_replace(*now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().expect("clock lock")
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let mut ticks = self.ticks.subscribe();
        Box::pin(async move {
            // The watch holds the latest time, so a tick between subscribe and wait is not missed.
            let _ = ticks.wait_for(|now| *now >= deadline).await;
        })
    }
}

/// One reading of the database's clock ([`SyncedClock::sync`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reading {
    /// This machine's clock just before the query.
    pub before: DateTime<Utc>,
    /// The database's clock, as the query read it.
    pub database: DateTime<Utc>,
    /// This machine's clock just after the answer.
    pub after: DateTime<Utc>,
}

/// A clock corrected by the database's: the times a worker computes (a sleep's
/// wake time, a retry's, its local lease deadline) are then on the clock that its
/// queries compare them with. The offset is measured against the database now and
/// then ([`SyncedClock::sync`]); between measurements it holds.
pub(crate) struct SyncedClock {
    inner: Arc<dyn Clock>,
    /// Database time minus this machine's, in microseconds.
    offset_micros: AtomicI64,
}

impl SyncedClock {
    pub fn new(inner: Arc<dyn Clock>) -> Self {
        SyncedClock {
            inner,
            offset_micros: AtomicI64::new(0),
        }
    }

    /// Whether there is anything to correct: a clock that drives the store itself
    /// (a test clock) is the time.
    pub fn follows_database(&self) -> bool {
        self.inner.store_now() == Now::Database
    }

    /// Measures the offset from readings of the database's clock, each taken
    /// between this machine's (uncorrected) `before` and `after`: of them, the one
    /// with the shortest round trip, taken as read half way (a longer trip, such as
    /// one that opened a connection, skews "half way"). Returns the new offset, or
    /// `None` (the offset unchanged) without readings.
    pub fn sync(&self, readings: &[Reading]) -> Option<chrono::Duration> {
        let best = readings
            .iter()
            .min_by_key(|reading| reading.after - reading.before)?;
        let midway = best.before + (best.after - best.before) / 2;
        let offset = best.database - midway;
        self.offset_micros
            .store(offset.num_microseconds().unwrap_or(0), Ordering::Relaxed);
        Some(offset)
    }

    /// This machine's reading, uncorrected (for [`SyncedClock::sync`]).
    pub fn local_now(&self) -> DateTime<Utc> {
        self.inner.now()
    }

    fn offset(&self) -> chrono::Duration {
        chrono::Duration::microseconds(self.offset_micros.load(Ordering::Relaxed))
    }
}

impl Clock for SyncedClock {
    fn now(&self) -> DateTime<Utc> {
        self.inner.now() + self.offset()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        self.inner.sleep_until(deadline - self.offset())
    }

    fn store_now(&self) -> Now {
        match self.inner.store_now() {
            Now::Database => Now::Database,
            Now::At(_) => Now::At(self.now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_saturates_instead_of_panicking() {
        let now = Utc::now();
        assert_eq!(later(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(
            later(now, Duration::from_secs(1)),
            now + chrono::Duration::seconds(1)
        );
    }

    #[test]
    fn a_synced_clock_reads_the_database_time_over_its_shortest_round_trip() {
        let machine = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
        let synced = SyncedClock::new(Arc::new(machine.clone()));
        let ms = chrono::Duration::milliseconds;
        let t = synced.local_now();
        // The database is a minute behind this machine. The first reading took
        // 90 ms (it opened a connection) and was answered 10 ms in; the second
        // took 2 ms and was answered half way.
        let minute = chrono::Duration::seconds(60);
        let readings = [
            Reading {
                before: t,
                database: t + ms(10) - minute,
                after: t + ms(90),
            },
            Reading {
                before: t + ms(100),
                database: t + ms(101) - minute,
                after: t + ms(102),
            },
        ];
        assert_eq!(synced.sync(&readings), Some(-minute));
        assert_eq!(synced.now(), machine.now() - minute);
        assert_eq!(synced.sync(&[]), None, "no reading keeps the offset");
        assert_eq!(synced.now(), machine.now() - minute);
    }

    #[tokio::test]
    async fn manual_sleepers_wake_when_the_clock_passes_their_deadline() {
        let clock = ManualClock::new(Utc::now());
        let deadline = clock.now() + chrono::Duration::seconds(60);
        let sleeper = tokio::spawn(clock.sleep_until(deadline));
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(30));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(30));
        sleeper.await.unwrap();
    }
}
