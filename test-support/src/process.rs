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
use std::time::{Duration, Instant};

/// `$env_var` if set (and non-empty), else `name` searched on `PATH`.
pub(crate) fn find_bin(env_var: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// A loopback port that is free right now. With `with_grpc_twin`, `port + 10000` is free
/// too (SeaweedFS derives its gRPC ports that way). Another process may still take it
/// before the server binds; callers get a clear startup error in that rare case.
pub fn free_port(with_grpc_twin: bool) -> io::Result<u16> {
    let loopback = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    for _ in 0..200 {
        let listener = TcpListener::bind(loopback(0))?;
        let port = listener.local_addr()?.port();
        if !with_grpc_twin {
            return Ok(port);
        }
        // Twins above 65535 are impossible, and ports in the ephemeral range could be
        // handed to some client later; so prefer ports whose twin fits.
        let Some(twin) = port.checked_add(10_000) else { continue };
        if TcpListener::bind(loopback(twin)).is_ok() {
            return Ok(port);
        }
    }
    // The ephemeral range is usually above 55535; fall back to scanning a fixed band.
    for port in 20_000..30_000u16 {
        if TcpListener::bind(loopback(port)).is_ok() && TcpListener::bind(loopback(port + 10_000)).is_ok() {
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

    /// The last lines of the server's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
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
