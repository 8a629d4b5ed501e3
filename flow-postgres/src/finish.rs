//! Finish announcements for waiting clients. A client that waits for a run adds
//! a row to `flow.run_watchers` (unlogged: no WAL flush, and nothing to keep over
//! a crash); the commit that finishes a watched run deletes its rows and NOTIFYs
//! `flow_finished` with the run's id, in the same statement. A run nobody waits
//! for costs no NOTIFY (whose lock would serialize commits). One listening
//! connection per store hands the ids to its waiters ([`Finishes`]).

use flow_core::store::{FinishWatch, Finishes};
use flow_core::{Error, RunId};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::{PgStore, db_error, held::on_conn};

/// The channel finishes of watched runs are announced on.
pub(crate) const FINISHED_CHANNEL: &str = "flow_finished";

/// The CTEs that announce the ends of the runs `$ended` selects (a subquery of
/// ids) to their watchers: their watcher rows are deleted and `flow_finished` is
/// NOTIFYed with their ids, 200 a notification (under the 8,000-byte payload
/// limit). Defines `unwatched` and `announced`; the statement must read
/// `announced` for the NOTIFY to run (a CTE nothing reads is not). The ids are
/// matched by `= ANY(ARRAY(...))`, which the planner turns into primary-key lookups.
macro_rules! announce_finishes_sql {
    ($ended:literal) => {
        concat!(
            "unwatched AS (
                 DELETE FROM flow.run_watchers w
                 WHERE w.run_id = ANY(ARRAY(",
            $ended,
            "))
                 RETURNING w.run_id
             ), announced AS (
                 SELECT pg_notify('flow_finished', string_agg(run_id::text, ','))
                 FROM (SELECT run_id, (row_number() OVER ()) / 200 AS chunk
                       FROM (SELECT DISTINCT run_id FROM unwatched) AS d) AS c
                 GROUP BY chunk
             )"
        )
    };
}

pub(crate) use announce_finishes_sql;

/// A store's listener for finishes, started by its first watch.
#[derive(Default)]
pub(crate) struct Listening {
    finishes: Finishes,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().take() {
            task.abort();
        }
    }
}

impl Listening {
    /// Starts the listener unless it runs; LISTEN has taken effect on return, so
    /// a finish announced afterwards reaches the watches made afterwards.
    async fn ensure(&self, pool: &PgPool) -> Result<(), Error> {
        let mut task = self.task.lock().await;
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return Ok(());
        }
        let mut listener = PgListener::connect_with(pool).await.map_err(db_error)?;
        listener.listen(FINISHED_CHANNEL).await.map_err(db_error)?;
        let finishes = self.finishes.clone();
        *task = Some(tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => finishes.announce(parse(notification.payload())),
                    // The connection was lost and is open again: what was announced
                    // meanwhile is lost, so every waiter reads its run again.
                    Ok(None) => finishes.missed(),
                    Err(e) => {
                        tracing::debug!(error = %e, "the finish listener stopped; the next wait starts it again");
                        finishes.missed();
                        return;
                    }
                }
            }
        }));
        Ok(())
    }
}

/// The run ids of a payload (comma-separated); what does not read is skipped.
fn parse(payload: &str) -> Vec<RunId> {
    payload
        .split(',')
        .filter_map(|id| id.parse().ok().map(RunId))
        .collect()
}

impl PgStore {
    /// A watch of `run`'s finish: listening first, then the row that asks for the
    /// announcement. The watch deletes its row when it ends; if the finish deleted
    /// it already, that DELETE finds nothing (a finish by recovery or
    /// `settle_blocked` leaves the row).
    pub(crate) async fn watch(&self, run: RunId) -> Result<FinishWatch, Error> {
        self.listening.ensure(&self.pool).await?;
        let watch = self.listening.finishes.watch(run);
        let watcher = Uuid::now_v7();
        self.watcher_row(
            "INSERT INTO flow.run_watchers (run_id, watcher) VALUES ($1, $2)",
            run,
            watcher,
        )
        .await?;
        let store = self.clone();
        Ok(watch.on_drop(move || {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let deleted = store
                        .watcher_row(
                            "DELETE FROM flow.run_watchers WHERE run_id = $1 AND watcher = $2",
                            run,
                            watcher,
                        )
                        .await;
                    if let Err(e) = deleted {
                        tracing::debug!(error = %e, "could not delete a finished wait's row");
                    }
                });
            }
        }))
    }

    /// One statement on a watcher's row (`$1` the run, `$2` the watcher); safe to
    /// repeat.
    async fn watcher_row(&self, sql: &'static str, run: RunId, watcher: Uuid) -> Result<(), Error> {
        on_conn!(self, repeat = true, |conn| async {
            sqlx::query(sql)
                .bind(run.0)
                .bind(watcher)
                .execute(&mut *conn)
                .await
                .map_err(db_error)
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_reads_as_the_ids_it_lists() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(parse(&format!("{a},{b}")), [RunId(a), RunId(b)]);
        assert_eq!(parse(&format!("{a},not-an-id")), [RunId(a)]);
        assert!(parse("").is_empty());
    }
}
