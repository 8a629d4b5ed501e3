//! Announcing finished runs to the clients waiting for them, so that
//! [`Client::wait`](crate::Client::wait) reads a run again as soon as it may have
//! finished instead of at its next poll. A store that can tell keeps a
//! [`Finishes`] hub and hands out [`FinishWatch`]es from it; one that cannot hands
//! out [`FinishWatch::none`], and its waiters poll.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::RunId;

/// Announcements a hub keeps for a slow watcher before it has missed some (it
/// then reads its run again, which is always right).
const BACKLOG: usize = 1024;

/// Where a store announces the runs it saw finish. Cheap to clone: clones share
/// their watchers.
#[derive(Clone, Debug)]
pub struct Finishes {
    sender: broadcast::Sender<Arc<[RunId]>>,
}

impl Default for Finishes {
    fn default() -> Self {
        Finishes {
            sender: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Finishes {
    /// Tells every watcher of these runs that they finished.
    pub fn announce(&self, runs: impl Into<Arc<[RunId]>>) {
        let runs = runs.into();
        if !runs.is_empty() {
            // No receiver: nobody waits, which is no error.
            let _ = self.sender.send(runs);
        }
    }

    /// Tells every watcher that announcements may have been lost (a connection
    /// that carried them broke): each reads its run again.
    pub fn missed(&self) {
        let _ = self.sender.send(Arc::from([]));
    }

    /// A watch of `run`'s finish; announcements from now on reach it.
    pub fn watch(&self, run: RunId) -> FinishWatch {
        FinishWatch {
            run,
            announced: Some(self.sender.subscribe()),
            on_drop: None,
        }
    }
}

/// A watch of one run's finish, made by
/// [`ReadStore::watch_finish`](super::ReadStore::watch_finish). Ends when dropped.
pub struct FinishWatch {
    run: RunId,
    announced: Option<broadcast::Receiver<Arc<[RunId]>>>,
    on_drop: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for FinishWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FinishWatch")
            .field("run", &self.run)
            .field("announces", &self.announces())
            .finish_non_exhaustive()
    }
}

impl FinishWatch {
    /// A watch that never announces: the waiter polls.
    pub fn none(run: RunId) -> FinishWatch {
        FinishWatch {
            run,
            announced: None,
            on_drop: None,
        }
    }

    /// Runs `cleanup` when the watch ends (a store's own bookkeeping, such as a
    /// row that asks for the announcement).
    pub fn on_drop(mut self, cleanup: impl FnOnce() + Send + 'static) -> FinishWatch {
        self.on_drop = Some(Box::new(cleanup));
        self
    }

    /// Whether announcements can come.
    pub fn announces(&self) -> bool {
        self.announced.is_some()
    }

    /// Resolves once the run's finish was announced, or once announcements may
    /// have been missed (the waiter should read the run again); never, if none
    /// can come.
    pub async fn announced(&mut self) {
        let Some(receiver) = &mut self.announced else {
            return std::future::pending().await;
        };
        loop {
            match receiver.recv().await {
                // An empty announcement: some may have been lost.
                Ok(runs) if runs.is_empty() || runs.contains(&self.run) => return,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => {
                    self.announced = None;
                    return std::future::pending().await;
                }
            }
        }
    }
}

impl Drop for FinishWatch {
    fn drop(&mut self) {
        if let Some(cleanup) = self.on_drop.take() {
            cleanup();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run() -> RunId {
        RunId(uuid::Uuid::now_v7())
    }

    #[tokio::test]
    async fn a_watch_resolves_on_its_own_run_only() {
        let finishes = Finishes::default();
        let (mine, other) = (run(), run());
        let mut watch = finishes.watch(mine);
        finishes.announce(vec![other]);
        let early = tokio::time::timeout(Duration::from_millis(50), watch.announced()).await;
        assert!(
            early.is_err(),
            "another run's finish does not wake the watch"
        );
        finishes.announce(vec![other, mine]);
        tokio::time::timeout(Duration::from_secs(5), watch.announced())
            .await
            .expect("the watch resolves when its run finishes");
    }

    #[tokio::test]
    async fn a_watch_that_missed_announcements_resolves() {
        let finishes = Finishes::default();
        let mut watch = finishes.watch(run());
        for _ in 0..BACKLOG + 1 {
            finishes.announce(vec![run()]);
        }
        tokio::time::timeout(Duration::from_secs(5), watch.announced())
            .await
            .expect("a lagging watch resolves, so the waiter reads again");
    }

    #[tokio::test]
    async fn a_watch_resolves_when_announcements_were_lost() {
        let finishes = Finishes::default();
        let mut watch = finishes.watch(run());
        finishes.missed();
        tokio::time::timeout(Duration::from_secs(5), watch.announced())
            .await
            .expect("every watch reads its run again");
    }

    #[test]
    fn a_watch_runs_its_cleanup_once_when_dropped() {
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        let watch = Finishes::default().watch(run()).on_drop(move || {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        drop(watch);
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
