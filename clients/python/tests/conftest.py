"""A real standalone Strata server per test session (the binary from $STRATA_BIN, else
built by scripts/strata_bin.sh), on a free loopback port with a temporary data directory."""

import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def strata_bin() -> str:
    if os.environ.get("STRATA_BIN"):
        return os.environ["STRATA_BIN"]
    return subprocess.run([str(REPO / "scripts" / "strata_bin.sh")], check=True, capture_output=True,
                          text=True).stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, env_extra=None):
        self.dir = tempfile.TemporaryDirectory(prefix="strata-pyclient-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "STRATA_LOG": "warn", **(env_extra or {})}
        self.log = open(Path(self.dir.name) / "server.log", "wb")
        self.proc = subprocess.Popen(
            [strata_bin(), "standalone", "--listen", f"127.0.0.1:{self.port}", "--data-dir", f"{self.dir.name}/data"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1).read()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"strata did not start: {(Path(self.dir.name) / 'server.log').read_text()}")
                time.sleep(0.1)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        self.dir.cleanup()


@pytest.fixture(scope="session")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def keyed_server():
    """A server that checks API keys: one admin key and one read key."""
    binary = strata_bin()
    keys = {}
    entries = []
    for role in ("admin", "read"):
        out = subprocess.run([binary, "keys", "new", "--name", role, "--role", role], check=True,
                             capture_output=True, text=True).stdout.splitlines()
        keys[role] = out[0]
        entries.append("\n".join(out[1:]))
    keys_file = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    keys_file.write("\n".join(entries) + "\n")
    keys_file.close()
    s = Server({"STRATA__AUTH__KEYS_FILE": keys_file.name})
    s.keys = keys
    yield s
    s.stop()
    os.unlink(keys_file.name)
