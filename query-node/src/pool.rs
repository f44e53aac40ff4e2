//! The search pool: where large shard searches run. An exact scan of a big unflushed
//! tail, or a graph walk with a very wide `ef`, takes milliseconds of pure CPU, which must
//! not run on an async worker (it would stall every task queued behind it: acks, other
//! searches, the serving loop). Such searches run on tokio's blocking threads, at most
//! `search_threads` at once; the rest wait asynchronously for a permit, so a burst of
//! them queues instead of oversubscribing the cores. (Small searches stay on the async
//! worker: see `host.rs`.)

use std::sync::Arc;

use strata_types::{Error, Result};
use tokio::sync::Semaphore;

/// Runs CPU-bound search work off the async runtime, a bounded number at a time.
#[derive(Clone, Debug)]
pub(crate) struct SearchPool {
    permits: Arc<Semaphore>,
}

impl SearchPool {
    /// A pool running `threads` searches at once (0: one per CPU core).
    pub fn new(threads: usize) -> SearchPool {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let threads = if threads == 0 { cores } else { threads };
        SearchPool { permits: Arc::new(Semaphore::new(threads)) }
    }

    /// Runs `work` on a blocking thread once a permit is free.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| Error::internal("search pool closed"))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| Error::internal(format!("a search panicked: {e}")))
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // real threads sleeping in real time
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_the_permitted_searches_run_at_once() {
        let pool = SearchPool::new(2);
        let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                        i
                    })
                    .await
                })
            })
            .collect();
        let mut done = Vec::new();
        for t in tasks {
            done.push(t.await.unwrap().unwrap());
        }
        assert_eq!(done, (0..8).collect::<Vec<_>>());
        assert_eq!(peak.load(Ordering::SeqCst), 2, "two permits, two searches at a time");
    }

    #[tokio::test]
    async fn a_panicking_search_is_an_internal_error_and_frees_its_permit() {
        let pool = SearchPool::new(1);
        let err = pool.run(|| panic!("boom")).await.unwrap_err();
        assert_eq!(err.kind(), strata_types::ErrorKind::Internal);
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }
}
