"""The engine as a process: clean shutdown on SIGTERM, no orphans, incidents survive restarts and crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import av
import pytest

from tests.support.engine_process import start_engine
from tests.support.media import CROWD, LOWER_ZONE, cut_scenario
from tests.support.processes import stop
from tests.support.rtp_listener import RtpListener
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
            "detector": {"calibrate": False},  # the crowd's counts were measured at the 960 default
            "cameras": {"plaza": {"url": str(scenario), "zones": {"lower": {"points": LOWER_ZONE}}}},
            "rules": [{"kind": "gathering", "camera": "plaza", "zone": "lower", "min_people": 4, "dwell_s": 2}],
        }
    )


def test_sigterm_finishes_the_open_clip_and_leaves_no_process(crowd_config: Path) -> None:
    data = crowd_config.parent / "data"
    log = crowd_config.parent / "engine.log"
    engine = start_engine(crowd_config, log)
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
    log = crowd_config.parent / "engine.log"
    engine = start_engine(crowd_config, log)
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


def test_a_crash_with_an_open_incident_is_resumed_after_the_restart_not_duplicated(
    root: Path, square_mp4: Path, tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    scenario = cut_scenario(square_mp4, [CROWD], tmp_path / "crowd.mp4")  # loops: the crowd stays
    horn = RtpListener()
    rule = {"kind": "gathering", "camera": "plaza", "zone": "lower", "min_people": 4, "dwell_s": 2, "clear_s": 30,
            "cooldown_s": 600, "announcement": str(root / "announcements/disperse_en.wav")}  # fmt: skip
    cfg = write_config(
        {
            "data_dir": "./data",
            "clips": {"pre_roll_s": 5, "post_roll_s": 30},  # the clip is still being written when the engine dies
            "detector": {"calibrate": False},  # the crowd's counts were measured at the 960 default
            "cameras": {"plaza": {"url": str(scenario), "zones": {"lower": {"points": LOWER_ZONE}}, "speakers": ["h"]}},
            "speakers": {"h": {"kind": "rtp", "host": "127.0.0.1", "port": horn.port, "codec": "pcmu"}},
            "rules": [rule],
        }
    )
    data = cfg.parent / "data"
    log = cfg.parent / "engine.log"
    engine = start_engine(cfg, log, "--no-web")
    try:
        wait_for_log(engine, log, "opened: gathering", timeout=90)
        time.sleep(2)
        os.killpg(engine.pid, signal.SIGKILL)  # the engine and its embedded Redis, as a power cut would
        engine.wait(10)
    finally:
        stop(engine)
    [crashed] = incidents_via_cli(cfg)
    assert crashed["status"] == "open"
    engine = start_engine(cfg, log, "--no-web", "--duration", "15")
    try:
        assert engine.wait(90) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        stop(engine)
    horn.close()
    assert horn.announcements == 1, "announced once before the crash, not again after the restart (cooldown)"
    records = incidents_via_cli(cfg)
    assert [r["id"] for r in records] == [crashed["id"]], "the same incident carried on: no second one beside it"
    [record] = records
    assert record["details"]["closed_by"] == "engine_stop" and record["closed_at"] is not None
    assert any("resumed after a restart" in entry["event"] for entry in record["timeline"])
    assert "left open by the previous run: resumed" in log.read_text(errors="replace")
    assert record["clip"] is None and "stopped before its clip" in record["details"]["clip_error"]
    assert not list((data / "clips").glob("*.part")), "no half-written clip left"
    assert processes_mentioning(str(data / "redis")) == []


def test_a_camera_offline_incident_stays_one_incident_across_a_clean_restart(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    from tests.support.processes import free_port

    cfg = write_config(
        {
            "data_dir": "./data",
            "cameras": {
                "dark": {"url": f"rtsp://127.0.0.1:{free_port()}/none", "offline_after_s": 2, "open_timeout_s": 1}
            },
        }
    )
    ids = []
    for _ in range(2):
        log = cfg.parent / "engine.log"
        engine = start_engine(cfg, log, "--no-web", "--duration", "8")
        try:
            assert engine.wait(60) == 0, log.read_text(errors="replace")[-3000:]
        finally:
            stop(engine)
        [record] = incidents_via_cli(cfg)
        assert record["kind"] == "camera_offline" and record["status"] == "open" and record["closed_at"] is None
        ids.append(record["id"])
    assert ids[0] == ids[1], "one outage, one incident: not closed and reopened by the restart"
    assert any("resumed" in entry["event"] for entry in record["timeline"])
    assert "Connection refused" in (record["details"].get("last_error") or "")
