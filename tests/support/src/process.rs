//! Process plumbing for the server guards: finding binaries, picking ports, spawning a
//! server in its own process group with its output in a log file, probing it over plain
//! HTTP/1.1, and killing the whole group.
//!
//! Invariant: a spawned [`Child`] is always killed and reaped (on [`Child::kill`] or drop),
//! together with any helper processes it forked, because it leads its own process group.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `$env_var` if set (and non-empty), else `name` searched on `PATH`.
pub(crate) fn find_bin(env_var: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// Ports are picked in this band, below the kernel's usual ephemeral range (32768+), so an
/// outgoing connection of some other test cannot grab a port between the pick and the
/// server's bind; twins (`+ 10000`) stay below the ephemeral range too.
const BAND: std::ops::Range<u16> = 12_000..22_000;

/// A loopback port that is free right now. With `with_grpc_twin`, `port + 10000` is free
/// too (SeaweedFS derives its gRPC ports that way). Each call starts at a different
/// pseudo-random point of the band, so parallel test processes rarely race for one port;
/// when they do, the server fails to bind and the guard retries on new ports.
pub fn free_port(with_grpc_twin: bool) -> io::Result<u16> {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let seed = u64::from(nanos) ^ (u64::from(std::process::id()) << 20) ^ CALLS.fetch_add(7919, Ordering::Relaxed);
    let width = u64::from(BAND.end - BAND.start);
    let free = |port: u16| TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_ok();
    for step in 0..width {
        let offset = u16::try_from((seed.wrapping_mul(2_654_435_761) + step) % width).unwrap_or(0);
        let port = BAND.start + offset;
        if free(port) && (!with_grpc_twin || free(port + 10_000)) {
            return Ok(port);
        }
    }
    Err(io::Error::new(io::ErrorKind::AddrInUse, "no free loopback port found"))
}

/// Polls `check` every 100 ms until it holds or `timeout` passes.
pub(crate) fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The status code of `GET path` on 127.0.0.1:`port`, or `None` if nothing answered.
pub(crate) fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?;
    line.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

/// A server process leading its own process group, output appended to a log file.
pub(crate) struct Child {
    child: std::process::Child,
    log: PathBuf,
    /// Set once reaped: the pid may be reused afterwards and must not be signalled again.
    reaped: bool,
}

impl Child {
    pub(crate) fn spawn(mut cmd: Command, log: &Path) -> io::Result<Self> {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        let child = cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("cannot start {cmd:?}: {e}")))?;
        Ok(Self { child, log: log.to_owned(), reaped: false })
    }

    /// Whether the server has exited (it failed to start, e.g. a port was taken).
    pub(crate) fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines of the server's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Sends `signal` to the whole process group (SIGSTOP / SIGCONT to freeze and thaw it).
    pub(crate) fn signal(&self, signal: libc::c_int) {
        if self.reaped {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: plain syscall on the process group of a child we started and have
            // not reaped (so the pid cannot have been reused).
            unsafe { libc::kill(-pid, signal) };
        }
    }

    /// SIGKILLs the whole process group and reaps the leader.
    pub(crate) fn kill(&mut self) {
        if self.reaped {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: plain syscall; the group id is our child's pid (process_group(0)), so
            // this can only signal processes we started.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A process a test spawned itself (a `strata` node, say), killed and reaped when dropped,
/// even when an assertion fails mid-test. Derefs to the [`std::process::Child`].
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}
