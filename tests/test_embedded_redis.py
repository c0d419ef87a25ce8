"""The embedded Redis with real redis-server processes: one per data directory, always stoppable, never orphaned."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from monitor.store.embedded import STOP_TIMEOUT_S, EmbeddedRedis, EmbeddedRedisError
from monitor.store.redis_keeper import RedisKeeper
from tests.support.filesystems import fill, small_tmpfs
from tests.support.processes import stop
from tests.support.redis_server import servers, wait_for_server, wait_until_gone
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent

# A process that starts (or attaches to) the embedded Redis of argv[1] when told "go", then waits for a line
# on stdin (or EOF) and stops it. Ctrl-C while waiting writes a key first (Redis must still be up).
STARTER = r"""
import logging, sys
from pathlib import Path
import redis
from monitor.store.embedded import EmbeddedRedis
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
import signal
# Ctrl-C as in a terminal: a runner started as a background job (`cmd &`) hands its children SIGINT ignored
signal.signal(signal.SIGINT, signal.default_int_handler)
embedded = EmbeddedRedis(Path(sys.argv[1]))
print("ready", flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(1)
embedded.start(timeout=20)
client = redis.Redis.from_url(embedded.url, socket_timeout=10)  # a server that stops answering: an error, logged
client.set("written-by-" + sys.argv[2], "yes")
try:
    print("started" if embedded.started else "attached", flush=True)
    sys.stdin.readline()
except KeyboardInterrupt:
    client.set("after-ctrl-c", "yes")
    print("interrupted", flush=True)
finally:
    embedded.stop()
"""

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="apt-get install redis-server")


def diagnosis(data_dir: Path, starter_log: str) -> str:
    """The starter's log, each server's state and kernel wait channel, and the end of the server's log."""
    redis_dir = (data_dir / "redis").resolve()
    states = []
    for pid in servers(redis_dir):
        proc = Path(f"/proc/{pid}")
        with contextlib.suppress(OSError):
            states.append(f"redis-server {pid}: {(proc / 'stat').read_text().rsplit(')', 1)[1].split()[0]} "
                          f"wchan={(proc / 'wchan').read_text()}")  # fmt: skip
    log = (redis_dir / "redis.log").read_text(errors="replace")[-2000:] if (redis_dir / "redis.log").exists() else ""
    return f"starter log:\n{starter_log[-3000:]}\nservers: {states or 'none'}\nredis.log:\n{log}"


class Starters:
    """Starter processes of one test (stopped, and their servers with them, at the end)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.procs: list[subprocess.Popen[str]] = []

    def spawn(self, name: str, new_session: bool = False) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", STARTER, str(self.data_dir), name],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(self.data_dir.parent / f"{name}.log").open("w"),
            text=True,
            start_new_session=new_session,
        )
        self.procs.append(proc)
        expect(proc, "ready", timeout=30)
        return proc

    def log(self, name: str) -> str:
        return (self.data_dir.parent / f"{name}.log").read_text()


def expect(proc: subprocess.Popen[str], *wanted: str, timeout: float = 30) -> str:
    """The next line the process prints, which must be one of ``wanted``."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline().strip() if ready else f"<nothing within {timeout} s>"
    assert line in wanted, f"{line!r}, expected {wanted}"
    return line


def tell(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    for pid in servers((path / "redis").resolve()):  # started by this test's starters: never leak one
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def starters(data_dir: Path) -> Iterator[Starters]:
    group = Starters(data_dir)
    yield group
    for proc in group.procs:
        stop(proc, signal.SIGKILL)


def read_key(data_dir: Path, key: str) -> bytes | None:
    """A key as persisted: start the embedded server from the directory, read, stop it."""
    embedded = EmbeddedRedis(data_dir)
    try:
        value = redis.Redis.from_url(embedded.start()).get(key)
        return value if isinstance(value, bytes) else None
    finally:
        embedded.stop()


def test_start_stop_persists_and_a_second_starter_attaches(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    first, second = EmbeddedRedis(data_dir), EmbeddedRedis(data_dir)
    redis.Redis.from_url(first.start()).set("k", "v")
    assert first.started and servers(first.dir) == [first.proc.pid if first.proc else -1]
    assert second.start() == first.url and not second.started, "attached, not started"
    assert servers(first.dir) == [first.proc.pid if first.proc else -1]
    second.stop()  # not its server: left running
    assert len(servers(first.dir)) == 1
    with caplog.at_level(logging.INFO, logger="monitor.store.embedded"):
        begun = time.monotonic()
        first.stop()
        assert time.monotonic() - begun < 2
    assert "saved and stopped" in caplog.text
    assert servers(first.dir) == [] and (first.dir / "dump.rdb").is_file()
    with (first.dir / "redis.lock").open("r+") as lock:  # released with the server
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert read_key(data_dir, "k") == b"v"


def test_concurrent_starters_run_one_server(data_dir: Path, starters: Starters) -> None:
    names = ["a", "b", "c"]
    procs = [starters.spawn(name) for name in names]
    for proc in procs:  # as close together as we can
        tell(proc, "go")
    outcomes = [expect(proc, "started", "attached") for proc in procs]
    assert sorted(outcomes) == ["attached", "attached", "started"], [starters.log(n) for n in names]
    redis_dir = (data_dir / "redis").resolve()
    assert len(servers(redis_dir)) == 1
    client = redis.Redis(unix_socket_path=str(EmbeddedRedis(data_dir).socket))
    assert all(client.get(f"written-by-{name}") == b"yes" for name in names), "all three use the same server"
    client.close()
    owner = procs[outcomes.index("started")]
    for proc in procs:
        if proc is not owner:
            tell(proc, "stop")
            assert proc.wait(20) == 0
    assert len(servers(redis_dir)) == 1, "attached processes leave the server running"
    tell(owner, "stop")
    assert owner.wait(20) == 0
    assert servers(redis_dir) == []


def test_killed_starter_leaves_no_second_server(data_dir: Path, starters: Starters) -> None:
    redis_dir = (data_dir / "redis").resolve()
    crashed = starters.spawn("crashed")
    tell(crashed, "go")
    expect(crashed, "started")
    [old] = servers(redis_dir)
    crashed.kill()
    crashed.wait()
    embedded = EmbeddedRedis(data_dir)  # restarted at once, while the old server is stopping
    try:
        embedded.start()
        now = servers(redis_dir)
        assert len(now) == 1 and old not in now, "the old server went away (it does not outlive its starter)"
        assert embedded.started, "the server dying with its starter was not attached to"
        assert redis.Redis.from_url(embedded.url).get("written-by-crashed") == b"yes"
    finally:
        embedded.stop()
    assert servers(redis_dir) == []


def test_ctrl_c_to_the_engine_does_not_stop_redis_under_it(data_dir: Path, starters: Starters) -> None:
    engine = starters.spawn("engine", new_session=True)  # its own process group, like a terminal job
    tell(engine, "go")
    expect(engine, "started")
    os.killpg(engine.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    try:
        expect(engine, "interrupted")
    except AssertionError as exc:  # say what the starter and the server were doing
        raise AssertionError(f"{exc}\n{diagnosis(data_dir, starters.log('engine'))}") from None
    assert engine.wait(20) == 0
    assert wait_until_gone((data_dir / "redis").resolve(), 5) == []
    assert read_key(data_dir, "after-ctrl-c") == b"yes", "Redis was still up after Ctrl-C"


def test_a_locked_directory_whose_server_does_not_answer_is_an_error(data_dir: Path) -> None:
    owner = EmbeddedRedis(data_dir)
    owner.start()
    assert owner.proc is not None
    os.kill(owner.proc.pid, signal.SIGSTOP)  # alive, holding the lock, not answering
    try:
        with pytest.raises(EmbeddedRedisError) as caught:
            EmbeddedRedis(data_dir).start(timeout=1)
        message = str(caught.value)
        assert str(owner.dir) in message and f"redis-server pid {owner.proc.pid}" in message
        assert len(servers(owner.dir)) == 1, "no second server"
    finally:
        begun = time.monotonic()
        owner.stop(timeout=3)  # a frozen server is stopped too, within the bound
        assert time.monotonic() - begun < 3 + 1.5
    assert servers(owner.dir) == []


def test_lock_held_without_a_server_is_an_error_naming_the_directory(data_dir: Path) -> None:
    embedded = EmbeddedRedis(data_dir)
    embedded.dir.mkdir(parents=True)
    with embedded.lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(EmbeddedRedisError, match=str(embedded.dir)):
            embedded.start(timeout=0.5)
    assert servers(embedded.dir) == []


@pytest.fixture
def small_data_dir(tmp_path: Path) -> Iterator[Path]:
    """data_dir on a 4 MB tmpfs (root only)."""
    with small_tmpfs(tmp_path / "small") as mount:
        path = mount / "data"
        try:
            yield path
        finally:
            for pid in servers((path / "redis").resolve()):
                os.kill(pid, signal.SIGKILL)
            wait_until_gone((path / "redis").resolve(), 5)


def fill_redis(client: redis.Redis) -> int:
    """Write until Redis refuses (its append-only file cannot grow); the number of keys written."""
    for i in range(100_000):
        try:
            client.set(f"big-{i}", b"x" * 20_000)
        except redis.ResponseError:
            return i
    raise AssertionError("the disk never filled up")


def test_full_disk_stop_is_bounded_and_leaves_no_server(small_data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    embedded = EmbeddedRedis(small_data_dir)
    client = redis.Redis.from_url(embedded.start())
    client.set("before", "full")
    time.sleep(1.1)  # appendfsync everysec
    written = fill_redis(client)
    filler = fill(small_data_dir, "filler")
    with caplog.at_level(logging.INFO, logger="monitor.store.embedded"):
        begun = time.monotonic()
        embedded.stop()
        took = time.monotonic() - begun
    assert took < STOP_TIMEOUT_S + 1
    assert "could not save" in caplog.text and "without the final save" in caplog.text
    assert servers(embedded.dir) == [], "no redis-server remains"
    filler.unlink()
    assert read_key(small_data_dir, "before") == b"full", "the append-only file kept the data"
    # (the last write or two acknowledged before the disk filled may be lost: appendfsync everysec)
    assert read_key(small_data_dir, f"big-{written // 2}") is not None


def test_full_disk_killed_starter_leaves_no_orphan(small_data_dir: Path, starters: Starters) -> None:
    """Issue #12: the server could neither save nor exit and stayed orphaned; a second one was started."""
    starters.data_dir = small_data_dir
    redis_dir = (small_data_dir / "redis").resolve()
    crashed = starters.spawn("crashed")
    tell(crashed, "go")
    expect(crashed, "started")
    fill_redis(redis.Redis(unix_socket_path=str(EmbeddedRedis(small_data_dir).socket)))
    filler = fill(small_data_dir, "filler")
    crashed.kill()  # the kernel sends the server SIGTERM; it cannot save, and must exit anyway
    crashed.wait()
    assert wait_until_gone(redis_dir, 10) == [], "the server did not outlive its starter on a full disk"
    filler.unlink()
    embedded = EmbeddedRedis(small_data_dir)
    try:
        embedded.start()
        assert len(servers(redis_dir)) == 1
        assert redis.Redis.from_url(embedded.url).get("written-by-crashed") == b"yes"
    finally:
        embedded.stop()
    assert servers(redis_dir) == []


def test_the_keeper_starts_a_killed_server_again_and_stops_it_at_the_end(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    embedded = EmbeddedRedis(data_dir)
    client = redis.Redis.from_url(embedded.start())
    client.set("k", "v")
    time.sleep(1.1)  # appendfsync everysec
    keeper = RedisKeeper(embedded, check_s=0.2)
    keeper.start()
    with caplog.at_level(logging.INFO, logger="monitor.store"):
        pid = wait_for_server(embedded.dir, None, 1)
        for restart in (1, 2):  # killed, crashed, OOM-killed: the same to the keeper
            os.kill(pid, signal.SIGKILL)
            pid = wait_for_server(embedded.dir, pid, 10)
            assert client.get("k") == b"v", "the server came back from its append-only file"
            # the server answers a moment before the keeper's start() returns and counts it
            counted = lambda n=restart: keeper.restarts == n and keeper.last_problem is None  # noqa: E731
            wait_until(counted, 5, f"restart {restart}")
        keeper.stop()
    assert "embedded Redis is down: it exited (status -9" in caplog.text
    assert "embedded Redis running again (restart 2)" in caplog.text
    assert servers(embedded.dir) == [], "the keeper stops the server at the end"
    assert read_key(data_dir, "k") == b"v"


def test_the_keeper_starts_the_server_once_a_full_disk_has_room(small_data_dir: Path) -> None:
    """A full disk at engine start: the server cannot start, and starts by itself once there is room."""
    small_data_dir.mkdir(parents=True)
    filler = fill(small_data_dir, "filler")  # before the first start: no room for the append-only file
    embedded = EmbeddedRedis(small_data_dir)
    with pytest.raises((EmbeddedRedisError, OSError)):
        embedded.start(timeout=5)
    keeper = RedisKeeper(embedded, check_s=0.2)
    keeper.start()
    try:
        deadline = time.monotonic() + 5
        while keeper.last_problem is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert keeper.last_problem == "no server runs for this directory" and servers(embedded.dir) == []
        filler.unlink()
        wait_for_server(embedded.dir, None, 40)  # retries back off up to 30 s
        assert redis.Redis.from_url(embedded.url).set("after", "room")
        wait_until(lambda: keeper.restarts == 1, 5, "the keeper counts its start")
    finally:
        keeper.stop()
    assert servers(embedded.dir) == []


def test_the_keeper_leaves_a_server_another_starter_runs_alone(data_dir: Path, starters: Starters) -> None:
    other = starters.spawn("other")
    tell(other, "go")
    expect(other, "started")
    [pid] = servers((data_dir / "redis").resolve())
    embedded = EmbeddedRedis(data_dir)
    embedded.start()  # attaches
    keeper = RedisKeeper(embedded, check_s=0.1)
    keeper.start()
    time.sleep(0.5)
    keeper.stop()
    assert servers((data_dir / "redis").resolve()) == [pid] and keeper.restarts == 0
