//! Tests of [`commit_with_rebase`]: concurrent committers on one chain, stopping, and the
//! transient-failure backoff on a manual clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use object_store::memory::InMemory;
use strata_test_support::HookedStore;
use strata_types::time::{Clock, ManualClock, SystemClock};
use strata_types::{Error, ErrorKind};

use super::*;

fn segment(id: &str) -> SegmentMeta {
    SegmentMeta {
        id: id.to_owned(),
        rows: 1,
        bytes: 1,
        min_seq: 0,
        max_seq: 0,
        has_graph: false,
        has_attr_index: false,
        tombstone: None,
        level: 0,
    }
}

/// A committer that appends segment `id` to the list (once); its output is the version it
/// built on.
struct AddSegment {
    id: String,
    attempts: u32,
    /// Yield between reading and committing, to widen the race window.
    yield_first: bool,
}

impl AddSegment {
    fn new(id: &str) -> Self {
        AddSegment { id: id.to_owned(), attempts: 0, yield_first: false }
    }
}

impl Rebase for AddSegment {
    type Output = u64;

    fn step<'a>(&'a mut self, latest: &'a Manifest) -> BoxFuture<'a, strata_types::Result<Step<u64>>> {
        Box::pin(async move {
            self.attempts += 1;
            if self.yield_first {
                tokio::task::yield_now().await;
            }
            if latest.segment(&self.id).is_some() {
                return Ok(Step::Stop(latest.version));
            }
            let mut next = latest.clone();
            next.version += 1;
            next.segments.push(segment(&self.id));
            Ok(Step::Commit(next, latest.version))
        })
    }
}

/// A committer that always fails with `error`.
struct Failing(ErrorKind);

impl Rebase for Failing {
    type Output = ();

    fn step<'a>(&'a mut self, _: &'a Manifest) -> BoxFuture<'a, strata_types::Result<Step<()>>> {
        Box::pin(async move { Err(Error::new(self.0, "no")) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_committers_all_land_on_one_gapless_chain() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let shard = ShardPaths::new("c", 0);
    const COMMITTERS: usize = 16;
    let rebases = Arc::new(AtomicU32::new(0));
    let tasks: Vec<_> = (0..COMMITTERS)
        .map(|i| {
            let (store, shard, rebases) = (store.clone(), shard.clone(), rebases.clone());
            tokio::spawn(async move {
                let mut change = AddSegment { yield_first: true, ..AddSegment::new(&format!("seg-{i}")) };
                let policy = RetryPolicy::default();
                let done =
                    commit_with_rebase(store.as_ref(), &SystemClock, &shard, None, policy, &mut change).await.unwrap();
                rebases.fetch_add(change.attempts - 1, Ordering::Relaxed);
                done
            })
        })
        .collect();
    let mut versions = Vec::new();
    for t in tasks {
        let done = t.await.unwrap();
        assert!(done.committed);
        assert_eq!(done.value + 1, done.manifest.version, "each commit is its base plus one");
        versions.push(done.manifest.version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=COMMITTERS as u64).collect::<Vec<_>>(), "one version each, no gaps");
    let last = load_latest(store.as_ref(), &shard, None).await.unwrap();
    assert_eq!(last.version, COMMITTERS as u64);
    let mut ids: Vec<&str> = last.segments.iter().map(|s| s.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), COMMITTERS, "no committer's change was lost to a rebase: {ids:?}");
    assert!(rebases.load(Ordering::Relaxed) > 0, "the committers raced (some rebased)");
}

#[tokio::test]
async fn a_step_that_stops_commits_nothing() {
    let store = InMemory::new();
    let shard = ShardPaths::new("c", 0);
    let policy = RetryPolicy::default();
    let first = commit_with_rebase(&store, &SystemClock, &shard, Some(0), policy, &mut AddSegment::new("a")).await;
    assert!(first.unwrap().committed);
    let again =
        commit_with_rebase(&store, &SystemClock, &shard, Some(0), policy, &mut AddSegment::new("a")).await.unwrap();
    assert!(!again.committed, "already in: the step stops");
    assert_eq!((again.manifest.version, again.value), (1, 1));
    assert_eq!(load_latest(&store, &shard, None).await.unwrap().version, 1);
}

#[tokio::test]
async fn errors_that_are_not_transient_are_returned_at_once() {
    let store = InMemory::new();
    let shard = ShardPaths::new("c", 0);
    for kind in [ErrorKind::Invalid, ErrorKind::NotFound, ErrorKind::Internal, ErrorKind::Overloaded] {
        let policy = RetryPolicy::default();
        let err = commit_with_rebase(&store, &SystemClock, &shard, None, policy, &mut Failing(kind)).await;
        assert_eq!(err.unwrap_err().kind(), kind);
    }
}

/// A store that fails the next `failures` manifest creates with a transient error.
fn flaky_store(failures: Arc<AtomicU32>) -> HookedStore {
    HookedStore::new().before_put(move |location, opts| {
        let manifest = location.parts().any(|p| p.as_ref() == "manifest");
        if manifest && failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(object_store::Error::Generic { store: "flaky", source: "connection reset".into() });
        }
        Ok(opts)
    })
}

/// Lets the committing task run until it waits on the clock (or finishes).
async fn until_sleeping(clock: &ManualClock, task: &tokio::task::JoinHandle<impl Sized>) {
    while clock.sleepers() == 0 && !task.is_finished() {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn transient_failures_back_off_on_the_clock_then_succeed() {
    let failures = Arc::new(AtomicU32::new(2));
    let store = Arc::new(flaky_store(failures.clone()));
    let clock = Arc::new(ManualClock::new(0));
    let shard = ShardPaths::new("c", 0);
    let task = {
        let (store, clock, shard) = (store.clone(), clock.clone(), shard.clone());
        tokio::spawn(async move {
            let mut change = AddSegment::new("a");
            commit_with_rebase(store.as_ref(), clock.as_ref(), &shard, None, RetryPolicy::default(), &mut change).await
        })
    };
    // First failure: 200 ms of backoff, and nothing happens before they pass.
    until_sleeping(&clock, &task).await;
    clock.advance(Duration::from_millis(199));
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(!task.is_finished() && clock.sleepers() == 1, "still backing off at 199 ms");
    clock.advance(Duration::from_millis(1));
    // Second failure: 400 ms.
    while failures.load(Ordering::SeqCst) > 0 {
        tokio::task::yield_now().await;
    }
    until_sleeping(&clock, &task).await;
    clock.advance(Duration::from_millis(400));
    let done = task.await.unwrap().unwrap();
    assert!(done.committed);
    assert_eq!(done.manifest.version, 1);
    assert_eq!(clock.now_ms(), 600, "backed off 200 + 400 ms");
}

#[tokio::test]
async fn too_many_transient_failures_fail_the_commit() {
    let store = flaky_store(Arc::new(AtomicU32::new(u32::MAX)));
    let shard = ShardPaths::new("c", 0);
    let policy = RetryPolicy { max_transient_failures: 3, first_backoff: Duration::from_millis(1) };
    let mut change = AddSegment::new("a");
    let err = commit_with_rebase(&store, &SystemClock, &shard, None, policy, &mut change).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Retryable, "{err}");
    assert_eq!(change.attempts, 4, "the first attempt and three retries");
    assert_eq!(load_latest(&store.inner, &shard, None).await.unwrap().version, 0);
}
