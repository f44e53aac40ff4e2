//! Time, injected. Library code never reads the system clock or sleeps on its own: it asks
//! the [`Clock`] it was given (`Deps::clock`), so tests can run time-dependent behaviour —
//! flush ages, lease checks, backoffs, freshness bounds — deterministically with a
//! [`ManualClock`], and production runs on the [`SystemClock`].
//!
//! A clock answers two questions: the wall-clock time in milliseconds (stamped into
//! objects: WAL entries, manifests, catalog entries) and a monotonic [`Instant`]
//! (durations, deadlines, freshness); and it can sleep until an instant. Everything else —
//! [`ClockExt::sleep`], [`ClockExt::elapsed`], [`timeout`], [`Ticker`] — is built on those.
//!
//! This module is the only place allowed to call `Instant::now`, `SystemTime::now` and
//! tokio's timers (`clippy.toml` lists them as disallowed methods everywhere else).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use tokio::sync::watch;

/// A source of time that can also wait.
pub trait Clock: Send + Sync + 'static {
    /// Wall-clock milliseconds since the Unix epoch (what is stored in objects).
    fn now_ms(&self) -> u64;
    /// Monotonic now (for durations, deadlines and freshness; never goes back).
    fn now(&self) -> Instant;
    /// Resolves once [`Clock::now`] has reached `deadline` (at once if it already has).
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()>;
}

/// What every clock can do with the three primitives.
pub trait ClockExt: Clock {
    /// Resolves after `duration` of this clock's time.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.sleep_until(self.now() + duration)
    }

    /// Time since `since` (zero if `since` is in the future).
    fn elapsed(&self, since: Instant) -> Duration {
        self.now().saturating_duration_since(since)
    }
}

impl<C: Clock + ?Sized> ClockExt for C {}

/// A future that took longer than its [`timeout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {0:?}")]
pub struct Elapsed(pub Duration);

/// Runs `future` for at most `duration` of `clock`'s time.
pub async fn timeout<F: Future>(clock: &dyn Clock, duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    tokio::select! {
        biased;
        out = future => Ok(out),
        () = clock.sleep(duration) => Err(Elapsed(duration)),
    }
}

/// Fires every `period` of a clock's time; [`Ticker::tick`] is cancel-safe, so it can sit
/// in a `select!` loop. A tick that is late (the loop was busy) fires at once, and the
/// ticks missed meanwhile are skipped rather than fired in a burst.
pub struct Ticker {
    clock: Arc<dyn Clock>,
    period: Duration,
    next: Instant,
}

impl Ticker {
    /// The first tick fires one `period` from now.
    pub fn new(clock: Arc<dyn Clock>, period: Duration) -> Ticker {
        let next = clock.now() + period;
        Ticker { clock, period, next }
    }

    /// Waits for the next tick. Dropping the future before it resolves leaves the ticker
    /// as it was.
    pub async fn tick(&mut self) {
        self.clock.sleep_until(self.next).await;
        let now = self.clock.now();
        self.next += self.period;
        if self.next <= now {
            self.next = now + self.period;
        }
    }
}

/// The real clock: the system's wall clock, `Instant`, and tokio's timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

// The one place the real clock and timer are read.
#[allow(clippy::disallowed_methods)]
impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }
}

/// A clock that moves only when told to ([`ManualClock::advance`]): sleepers wake exactly
/// when the time they wait for is reached. For deterministic tests of time-dependent
/// behaviour.
#[derive(Debug)]
pub struct ManualClock {
    /// The monotonic origin; `now()` is this plus the offset.
    origin: Instant,
    /// Wall-clock milliseconds at the origin.
    origin_ms: u64,
    /// Time advanced so far; sleepers watch it.
    offset: watch::Sender<Duration>,
}

impl ManualClock {
    /// A clock whose wall time starts at `start_ms` (milliseconds since the Unix epoch).
    #[allow(clippy::disallowed_methods)] // the origin is arbitrary; only offsets from it matter
    pub fn new(start_ms: u64) -> ManualClock {
        ManualClock { origin: Instant::now(), origin_ms: start_ms, offset: watch::Sender::new(Duration::ZERO) }
    }

    /// Moves time forward by `by`, waking every sleeper whose deadline is reached.
    pub fn advance(&self, by: Duration) {
        self.offset.send_modify(|offset| *offset += by);
    }

    /// Sleeps in progress (futures of [`Clock::sleep_until`] not yet resolved or dropped):
    /// lets a test wait until the code under test is waiting before it advances time.
    pub fn sleepers(&self) -> usize {
        self.offset.receiver_count()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.origin_ms + self.offset.borrow().as_millis() as u64
    }

    fn now(&self) -> Instant {
        self.origin + *self.offset.borrow()
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        let mut offset = self.offset.subscribe();
        let origin = self.origin;
        Box::pin(async move {
            while origin + *offset.borrow_and_update() < deadline {
                if offset.changed().await.is_err() {
                    // The clock is gone: time never moves again.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Lets spawned tasks run until they wait on something.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_exactly_at_their_deadline() {
        let clock = Arc::new(ManualClock::new(1_000));
        let woke = Arc::new(AtomicUsize::new(0));
        for ms in [10, 20] {
            let (clock, woke) = (clock.clone(), woke.clone());
            tokio::spawn(async move {
                clock.sleep(Duration::from_millis(ms)).await;
                woke.fetch_add(1, Ordering::SeqCst);
            });
        }
        settle().await;
        assert_eq!(clock.sleepers(), 2);
        clock.advance(Duration::from_millis(9));
        settle().await;
        assert_eq!(woke.load(Ordering::SeqCst), 0, "nothing is due at 9 ms");
        clock.advance(Duration::from_millis(1));
        settle().await;
        assert_eq!(woke.load(Ordering::SeqCst), 1, "the 10 ms sleeper is due");
        assert_eq!(clock.sleepers(), 1);
        clock.advance(Duration::from_millis(15));
        settle().await;
        assert_eq!(woke.load(Ordering::SeqCst), 2);
        assert_eq!(clock.now_ms(), 1_025);
        assert_eq!(clock.elapsed(clock.now() - Duration::from_millis(25)), Duration::from_millis(25));
    }

    #[tokio::test]
    async fn a_ticker_skips_missed_ticks_and_is_cancel_safe() {
        let clock = Arc::new(ManualClock::new(0));
        let mut ticker = Ticker::new(clock.clone(), Duration::from_millis(100));
        // Cancelled before its deadline: nothing changes.
        assert!(futures::FutureExt::now_or_never(ticker.tick()).is_none());
        clock.advance(Duration::from_millis(100));
        assert!(futures::FutureExt::now_or_never(ticker.tick()).is_some(), "due at 100 ms");
        assert!(futures::FutureExt::now_or_never(ticker.tick()).is_none(), "the next is at 200 ms");
        // Three periods late: one tick fires, the missed ones are skipped.
        clock.advance(Duration::from_millis(350));
        assert!(futures::FutureExt::now_or_never(ticker.tick()).is_some());
        assert!(futures::FutureExt::now_or_never(ticker.tick()).is_none(), "no burst of missed ticks");
        clock.advance(Duration::from_millis(100));
        assert!(futures::FutureExt::now_or_never(ticker.tick()).is_some());
    }

    #[tokio::test]
    async fn timeout_follows_the_clock() {
        let clock = Arc::new(ManualClock::new(0));
        let slow = {
            let clock = clock.clone();
            tokio::spawn(
                async move { timeout(clock.as_ref(), Duration::from_secs(5), std::future::pending::<()>()).await },
            )
        };
        settle().await;
        clock.advance(Duration::from_secs(5));
        assert_eq!(slow.await.unwrap(), Err(Elapsed(Duration::from_secs(5))));
        assert_eq!(timeout(clock.as_ref(), Duration::from_secs(1), async { 7 }).await, Ok(7));
    }

    #[tokio::test]
    async fn the_system_clock_sleeps_for_real() {
        let clock = SystemClock;
        let started = clock.now();
        clock.sleep(Duration::from_millis(20)).await;
        assert!(clock.elapsed(started) >= Duration::from_millis(20));
        assert!(clock.now_ms() > 1_700_000_000_000, "wall time is since the epoch");
    }
}
