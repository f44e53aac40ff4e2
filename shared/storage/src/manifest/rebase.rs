//! [`commit_with_rebase`]: the one loop that commits a change to a shard's manifest chain.
//!
//! Every committer (a flush, a bulk import, a compaction) expresses its change as a
//! [`Rebase`]: given the newest manifest, its step is either the next manifest to create
//! ([`Step::Commit`]) or a reason to stop ([`Step::Stop`]: the change is already in, or no
//! longer applies). The
//! loop reads the newest manifest, runs the step against it and creates its result with a
//! create-only put (in the spirit of SlateDB's transactional object: read, modify,
//! conditional write, retry).
//!
//! Outcomes of an attempt:
//! - created: done;
//! - [`ErrorKind::Conflict`] (another committer created that version first, or the step
//!   met a create-only object written by a concurrent attempt): re-read the newest
//!   manifest and run the step again on it — a *rebase*, at once and without limit, since
//!   every lost race means someone else made progress;
//! - [`ErrorKind::Retryable`] (the store hiccuped): back off on the injected clock
//!   (`first_backoff`, doubling) and retry, at most `max_transient_failures` times;
//! - anything else: returned.
//!
//! The step may run many times, so it must be a function of the manifest it is given
//! (plus whatever it uploaded before, which stays valid). It may mutate its own state,
//! e.g. re-upload a segment that has grown too old to commit. (A trait with a boxed
//! future rather than an async closure: the compiler cannot yet prove an async closure's
//! future `Send` when it borrows, and committers run on spawned tasks.)

use std::time::Duration;

use futures::future::BoxFuture;
use object_store::ObjectStore;
use strata_types::time::{Clock, ClockExt};
use strata_types::{Error, ErrorKind, Result};

use super::{Manifest, commit, load_latest_or_list};
use crate::paths::ShardPaths;

/// What a committer wants done on top of the newest manifest.
#[derive(Debug)]
pub enum Step<T> {
    /// Create this manifest (its version must be the newest's plus one), then return `T`.
    Commit(Manifest, T),
    /// Commit nothing and return `T`.
    Stop(T),
}

/// A change to a shard's manifest, committed by [`commit_with_rebase`] onto whatever
/// version is newest.
pub trait Rebase: Send {
    type Output: Send;

    /// What to do on top of `latest` (see [`Step`]). Runs once per attempt.
    fn step<'a>(&'a mut self, latest: &'a Manifest) -> BoxFuture<'a, Result<Step<Self::Output>>>;
}

/// The end of [`commit_with_rebase`].
#[derive(Debug)]
pub struct Rebased<T> {
    /// The manifest created, or (when the step stopped) the newest one it was given.
    pub manifest: Manifest,
    /// Whether `manifest` was created by this call.
    pub committed: bool,
    pub value: T,
}

/// How transient failures are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retryable errors tolerated before the loop gives up. Default 5.
    pub max_transient_failures: u32,
    /// Wait after the first one; each further one doubles it. Default 200 ms (so 200,
    /// 400, 800, 1,600, 3,200 ms).
    pub first_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_transient_failures: 5, first_backoff: Duration::from_millis(200) }
    }
}

/// Commits `change` to `shard`'s manifest chain, rebasing onto every manifest another
/// committer creates first (see the module docs). `hint` is a version known to exist (it
/// saves a listing).
pub async fn commit_with_rebase<R: Rebase>(
    store: &dyn ObjectStore,
    clock: &dyn Clock,
    shard: &ShardPaths,
    mut hint: Option<u64>,
    policy: RetryPolicy,
    change: &mut R,
) -> Result<Rebased<R::Output>> {
    let mut transient_failures = 0;
    loop {
        let attempt = async {
            let latest = load_latest_or_list(store, shard, hint).await?;
            hint = Some(latest.version);
            match change.step(&latest).await? {
                Step::Stop(value) => Ok::<_, Error>(Rebased { manifest: latest, committed: false, value }),
                Step::Commit(next, value) => {
                    debug_assert_eq!(next.version, latest.version + 1, "a step commits the next version");
                    commit(store, shard, &next).await?;
                    Ok(Rebased { manifest: next, committed: true, value })
                }
            }
        };
        match attempt.await {
            Ok(done) => return Ok(done),
            Err(e) if e.kind() == ErrorKind::Conflict => {
                tracing::debug!(shard = %shard.root(), after = ?hint, "manifest race lost; rebasing");
            }
            Err(e) if e.kind() == ErrorKind::Retryable && transient_failures < policy.max_transient_failures => {
                let wait = policy.first_backoff * 2u32.pow(transient_failures);
                transient_failures += 1;
                tracing::warn!(shard = %shard.root(), error = %e, ?wait, "manifest commit failed; retrying");
                clock.sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}
