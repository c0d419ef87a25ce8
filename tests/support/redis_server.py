"""Fixtures: a real redis-server (Debian package) on a free loopback port, per test; one that tests can kill,
freeze and restart on the same port (outage tests)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.processes import free_port, stop


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, empty Redis server that lives for one test."""
    exe = shutil.which("redis-server") or pytest.skip("apt-get install redis-server")
    for _ in range(3):  # the free port may be taken by someone else in between: retry
        port = free_port()
        proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(tmp_path),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(tmp_path / "redis.log"),
            ]
        )
        client = redis.Redis(port=port)
        for _ in range(250):
            if proc.poll() is not None:
                break
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        if proc.poll() is None:
            break
    else:
        pytest.fail("redis-server did not start: " + (tmp_path / "redis.log").read_text())
    yield f"redis://127.0.0.1:{port}/0"
    client.close()
    stop(proc)


class RedisProcess:
    """A redis-server on a fixed loopback port that a test can SIGKILL, SIGSTOP/SIGCONT and start again.

    ``also``: more addresses it listens on (e.g. for engines in a network namespace, tests/support/netns.py).
    """

    def __init__(self, directory: Path, also: tuple[str, ...] = ()) -> None:
        self.exe = shutil.which("redis-server") or pytest.skip("apt-get install redis-server")
        self.dir = directory
        self.port = free_port()
        self.also = also
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis:// URL of the server (the same across restarts)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def url_at(self, host: str) -> str:
        """redis:// URL of the server at another address it listens on (one of ``also``)."""
        return f"redis://{host}:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) the server; appendonly so a restart after a kill keeps what it had acknowledged."""
        args = [self.exe, "--port", str(self.port), "--bind", " ".join(("127.0.0.1", *self.also)), "--dir",
                str(self.dir), "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--logfile",
                str(self.dir / "redis.log")]  # fmt: skip
        if self.also:  # protected mode refuses every client but loopback ones while no password is set
            args += ["--protected-mode", "no"]
        self.proc = subprocess.Popen(args)
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        pytest.fail("redis-server did not start: " + (self.dir / "redis.log").read_text())

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the server (SIGKILL, SIGSTOP, SIGCONT)."""
        assert self.proc is not None
        os.kill(self.proc.pid, sig)
        if sig == signal.SIGKILL:
            self.proc.wait(5)

    def client(self) -> redis.Redis:
        """A client for assertions."""
        return redis.Redis(port=self.port, socket_timeout=5)

    def close(self) -> None:
        """Stop the server for good."""
        if self.proc is not None:
            stop(self.proc)


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    """A started redis-server the test may kill, freeze and restart."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisProcess(directory)
    server.start()
    yield server
    server.close()


# -- embedded servers (a data directory's redis-server processes) --------------------------------------------------
def servers(redis_dir: Path) -> list[int]:
    """PIDs of live redis-server processes working in ``redis_dir`` (Redis chdirs into its --dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "redis-server":
                continue
            if Path(os.readlink(entry / "cwd")) != redis_dir:
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def wait_until_gone(redis_dir: Path, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while servers(redis_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    return servers(redis_dir)


def wait_for_server(redis_dir: Path, other_than: int | None, timeout: float) -> int:
    """The PID of the one live server of ``redis_dir`` that is not ``other_than``, once it answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [pid for pid in servers(redis_dir) if pid != other_than]
        if len(found) == 1 and redis.Redis(unix_socket_path=str(redis_dir / "redis.sock")).ping():
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no new server within {timeout} s: {servers(redis_dir)}")
