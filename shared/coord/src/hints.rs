//! Heads read as *hints*, for readers that can do without them (decision 0011).
//!
//! A head only lets a reader skip probing object storage (decision 0004); object storage
//! is the truth. So a reader must never wait long for one, and must never fail because
//! coordination is down: [`HeadHints::read`] bounds the wait to [`HEAD_READ_TIMEOUT`] and
//! answers [`Unavailable`] on any error or timeout, and the caller probes storage instead.
//!
//! After a failure, coordination is presumed down for [`HEAD_RETRY_AFTER`]: reads answer
//! [`Unavailable`] at once, without asking, so an outage costs each read the storage
//! probe and not also a timeout. When that time is up, exactly one read asks again (the
//! others keep going to storage meanwhile); its success closes the window.
//!
//! Invariant: a head returned here was read from coordination during this call; nothing
//! is cached, so the linearizability of [`Coordination::head`] carries over unchanged.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use strata_types::time::{self, Clock};

use crate::{Coordination, Head};

/// The longest a reader waits for a head before probing object storage instead. A healthy
/// etcd answers a linearizable read in about a millisecond; 250 ms is far above that yet
/// short enough that a read during a stall costs at most that on top of the probe.
pub const HEAD_READ_TIMEOUT: Duration = Duration::from_millis(250);

/// After a failed head read, how long readers skip coordination altogether before one of
/// them tries again.
pub const HEAD_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Coordination could not tell the head (down, stalled, or presumed so after a recent
/// failure): probe object storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unavailable;

/// Bounded, failure-tolerant head reads. One per node role (the state is the window in
/// which coordination is presumed down); cheap to share.
#[derive(Debug, Default)]
pub struct HeadHints {
    /// Until when reads skip coordination (set by a failure, and pushed forward by the
    /// read that tries again, so only that one waits).
    skip_until: Mutex<Option<Instant>>,
}

impl HeadHints {
    /// The published head of `key` (`Ok(None)`: none published), or [`Unavailable`].
    pub async fn read(
        &self,
        coord: &dyn Coordination,
        clock: &dyn Clock,
        key: &str,
    ) -> std::result::Result<Option<Head>, Unavailable> {
        {
            let now = clock.now();
            let mut skip = self.skip_until.lock().unwrap_or_else(|p| p.into_inner());
            if skip.is_some_and(|until| now < until) {
                return Err(Unavailable);
            }
            if skip.is_some() {
                // This read is the one that tries again; the rest skip until it knows.
                *skip = Some(now + HEAD_READ_TIMEOUT + HEAD_RETRY_AFTER);
            }
        }
        let outcome = match time::timeout(clock, HEAD_READ_TIMEOUT, coord.head(key)).await {
            Ok(Ok(head)) => Ok(head),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, key, "head read failed; probing object storage");
                Err(Unavailable)
            }
            Err(_) => {
                tracing::debug!(key, "head read timed out; probing object storage");
                Err(Unavailable)
            }
        };
        let mut skip = self.skip_until.lock().unwrap_or_else(|p| p.into_inner());
        *skip = match outcome {
            Ok(_) => None,
            Err(Unavailable) => Some(clock.now() + HEAD_RETRY_AFTER),
        };
        outcome
    }

    /// Whether reads currently skip coordination (a recent head read failed).
    pub fn presumed_down(&self, clock: &dyn Clock) -> bool {
        let skip = self.skip_until.lock().unwrap_or_else(|p| p.into_inner());
        skip.is_some_and(|until| clock.now() < until)
    }
}

#[cfg(test)]
#[path = "hints_tests.rs"]
mod tests;
