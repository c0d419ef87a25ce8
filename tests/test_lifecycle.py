"""The engine as a process: clean shutdown on SIGTERM, no orphans, incidents survive restarts and crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import pytest

from tests.support.media import CROWD, LOWER_ZONE, cut_scenario
from tests.support.processes import stop
from tests.support.waiting import incidents_via_cli

pytestmark = pytest.mark.slow


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (to find orphaned Redis servers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def wait_for_log(proc: subprocess.Popen[bytes], log: Path, needle: str, timeout: float) -> None:
    """Poll the engine's log file until ``needle`` shows up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} not logged within {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def crowd_config(root: Path, square_mp4: Path, tmp_path: Path, write_config: Callable[..., Path]) -> Path:
    scenario = cut_scenario(square_mp4, [CROWD], tmp_path / "crowd.mp4")
    return write_config(
        {
            "data_dir": "./data",
            "clips": {"pre_roll_s": 5, "post_roll_s": 30},  # still recording when we stop the engine
            "cameras": {"plaza": {"url": str(scenario), "zones": {"lower": {"points": LOWER_ZONE}}}},
            "rules": [{"kind": "gathering", "camera": "plaza", "zone": "lower", "min_people": 4, "dwell_s": 2}],
        }
    )


def start_engine(cfg: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log = cfg.parent / "engine.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "-c", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=out,
            env={**os.environ, "COLUMNS": "200"},
        )
    return proc, log


def test_sigterm_finishes_the_open_clip_and_leaves_no_process(crowd_config: Path) -> None:
    data = crowd_config.parent / "data"
    engine, log = start_engine(crowd_config)
    try:
        wait_for_log(engine, log, "opened: gathering", timeout=90)
        time.sleep(2)  # the clip is now recording its post-roll
        engine.send_signal(signal.SIGTERM)
        assert engine.wait(30) == 0
    finally:
        stop(engine)
    assert processes_mentioning(str(data / "redis")) == [], "the embedded Redis stopped with the engine"
    [record] = incidents_via_cli(crowd_config)  # Redis restarted from the data directory
    assert record["status"] == "closed" and record["details"]["closed_by"] == "engine_stop"
    assert record["clip"] is not None, "the clip in progress was finished at shutdown"
    with av.open(record["clip"]) as clip:
        assert sum(1 for _ in clip.decode(video=0)) >= 35  # the 2+ s before the incident and the 2 s after
    assert Path(record["snapshot"]).is_file()


def test_incidents_survive_a_crash(crowd_config: Path) -> None:
    data = crowd_config.parent / "data"
    engine, log = start_engine(crowd_config)
    try:
        wait_for_log(engine, log, "opened: gathering", timeout=90)
        time.sleep(1.5)  # the append-only file is synced every second
        engine.send_signal(signal.SIGKILL)
        engine.wait(10)
    finally:
        stop(engine)
    deadline = time.monotonic() + 10
    while processes_mentioning(str(data / "redis")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(str(data / "redis")) == [], "Redis does not outlive a killed engine"
    [record] = incidents_via_cli(crowd_config)
    assert record["kind"] == "gathering" and record["camera"] == "plaza"
    assert record["status"] == "open", "it was open when the engine died"
    assert Path(record["snapshot"]).is_file()
