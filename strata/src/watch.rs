//! Reloading what comes from files (API keys, TLS certificates) while a node runs: on
//! SIGHUP, and when a watched file's modification time or size changes.
//!
//! Files are polled every [`WATCH_EVERY`] on the injected clock rather than watched with
//! inotify: polling works the same for a file edited in place, replaced by `mv`, or swapped
//! behind a symlink as Kubernetes updates a mounted Secret, and needs no dependency.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use strata_types::time::{Clock, ClockExt};
use tokio::sync::watch;

/// How often watched files are checked for changes.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// What says a file changed: its modification time and size (`None`: unreadable).
pub type Stamp = Option<(SystemTime, u64)>;

/// The [`Stamp`] of `path` now (following symlinks).
pub fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Calls `reload` with why (`"SIGHUP"` or `"file changed"`) on SIGHUP and whenever
/// `stamps` changes, until `shutdown`.
pub async fn reload_on_change(
    clock: Arc<dyn Clock>,
    mut shutdown: watch::Receiver<bool>,
    stamps: impl Fn() -> Vec<Stamp>,
    reload: impl Fn(&'static str),
) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reloading on file changes only");
            None
        }
    };
    let mut seen = stamps();
    loop {
        let hangup_received = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        let why = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = hangup_received => "SIGHUP",
            () = clock.sleep(WATCH_EVERY) => {
                if stamps() == seen { continue }
                "file changed"
            }
        };
        reload(why);
        seen = stamps();
    }
}
