"""Redis killed or frozen during a gathering: the engine keeps detecting and announcing, and afterwards the store has
exactly one incident with its announcement result and clip (the outbox delivered it, replays changed nothing)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import av
import pytest
import redis

from monitor.store.embedded import EmbeddedRedis
from monitor.store.incidents import IncidentStore
from tests.support.engine_process import assert_kept_detect_rate, detect_rates, gathering_scenario, start_engine
from tests.support.processes import stop
from tests.support.redis_server import RedisProcess, servers, wait_for_server
from tests.support.rtp_listener import RtpListener
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("fault", "outage_s"), [(signal.SIGKILL, 40.0), (signal.SIGSTOP, 30.0)], ids=["killed", "frozen"]
)
def test_gathering_during_a_redis_outage_is_announced_and_recorded_once(
    fault: signal.Signals,
    outage_s: float,
    root: Path,
    tmp_path: Path,
    redis_process: RedisProcess,
    write_config: Callable[..., Path],
) -> None:
    horn = RtpListener()
    path = write_config(gathering_scenario(root, tmp_path, horn.port, redis_url=redis_process.url))
    log_path = tmp_path / "engine.log"
    duration = 12 + outage_s + 15
    engine = start_engine(path, log_path, "--no-web", "--duration", str(duration))
    try:
        wait_until(lambda: "detect" in log_path.read_text(errors="replace"), 60, "the engine detects")
        redis_process.signal(fault)  # before the gathering: the crowd appears ~17 s into the video
        faulted = time.monotonic()
        wait_until(lambda: horn.announcements >= 1, outage_s - 5, "the horn plays while Redis is down")
        assert "INCIDENT" in log_path.read_text(errors="replace")
        time.sleep(max(0.0, outage_s - (time.monotonic() - faulted)))
        if fault == signal.SIGKILL:
            redis_process.start()  # same port, from its append-only file
        else:
            redis_process.signal(signal.SIGCONT)
        assert engine.wait(duration + 60) == 0, log_path.read_text(errors="replace")[-3000:]
    finally:
        stop(engine)
        horn.close()
    log = log_path.read_text(errors="replace")
    records = list(IncidentStore(redis_process.client()).list())
    assert len(records) == 1, records
    [record] = records
    assert record["kind"] == "gathering" and record["camera"] == "plaza"
    assert [(a["speaker"], a["ok"]) for a in record["announcements"]] == [("horn", True)], "exactly once"
    assert horn.announcements == 1
    assert record["clip"] and Path(record["clip"]).is_file(), record
    with av.open(record["clip"]) as clip:
        assert sum(1 for _ in clip.decode(video=0)) > 40
    assert record["snapshot"] and Path(record["snapshot"]).is_file()
    assert record["status"] == "closed" and record["details"]["closed_by"] == "engine_stop"
    assert_kept_detect_rate(log, configured_fps=2.0, min_lines=int(outage_s))
    dropped = detect_rates(log)[-1][1]
    assert dropped <= 0.1 * 2 * duration, f"hardly a frame dropped: {dropped}"


def test_a_killed_embedded_redis_is_started_again_and_nothing_is_lost_or_doubled(
    root: Path, tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    """The default deployment (embedded Redis): its server is killed before the gathering and again right after the
    announcement; the engine starts it again each time, and the record is whole and single."""
    horn = RtpListener()
    path = write_config(gathering_scenario(root, tmp_path, horn.port))  # no redis_url: the embedded server
    redis_dir = (tmp_path / "data" / "redis").resolve()
    log_path = tmp_path / "engine.log"
    duration = 50
    engine = start_engine(path, log_path, "--no-web", "--duration", str(duration))
    try:
        wait_until(lambda: "detect" in log_path.read_text(errors="replace"), 60, "the engine detects")
        first = wait_for_server(redis_dir, None, 10)
        os.kill(first, signal.SIGKILL)
        second = wait_for_server(redis_dir, first, 10)
        wait_until(lambda: horn.announcements >= 1, 40, "the announcement")
        os.kill(second, signal.SIGKILL)  # the incident is open: its later changes wait in the outbox
        wait_for_server(redis_dir, second, 10)
        assert engine.wait(duration + 60) == 0, log_path.read_text(errors="replace")[-3000:]
    finally:
        stop(engine)
        horn.close()
    log = log_path.read_text(errors="replace")
    assert "embedded Redis running again (restart 2)" in log
    assert servers(redis_dir) == [], "stopped with the engine"
    embedded = EmbeddedRedis(tmp_path / "data")
    try:
        records = list(IncidentStore(redis.Redis.from_url(embedded.start())).list())
    finally:
        embedded.stop()
    assert len(records) == 1, records
    [record] = records
    assert [(a["speaker"], a["ok"]) for a in record["announcements"]] == [("horn", True)], "exactly once"
    assert horn.announcements == 1
    assert record["clip"] and Path(record["clip"]).is_file(), record
    assert record["status"] == "closed" and record["details"]["closed_by"] == "engine_stop"
    assert_kept_detect_rate(log, configured_fps=2.0, min_lines=20)
