"""data_dir on a small real file system that fills up: detection and announcements go on, incidents are recorded
(with ``clip_error: disk_full``), the page says why clips stopped, and the embedded Redis stops cleanly."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.engine_process import assert_kept_detect_rate, gathering_scenario, start_engine
from tests.support.filesystems import fill, small_tmpfs
from tests.support.processes import free_port, stop
from tests.support.rtp_listener import RtpListener
from tests.support.waiting import incidents_via_cli, wait_until
from tests.test_lifecycle import processes_mentioning

pytestmark = pytest.mark.slow

MB = 1024 * 1024


def healthz(port: int) -> dict[str, object]:
    """The engine page's /healthz (open, no login)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        return dict(json.loads(response.read()))


def test_a_filling_disk_stops_clips_not_incidents(
    root: Path, tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    horn = RtpListener()
    web_port = free_port()
    with small_tmpfs(tmp_path / "small", size="40m") as disk:
        scenario = gathering_scenario(
            root,
            tmp_path,
            horn.port,
            data_dir=str(disk / "data"),
            retention={"min_free_mb": 12},
            web={"host": "127.0.0.1", "port": web_port},
        )
        scenario["clips"]["post_roll_s"] = 3
        cfg = write_config(scenario)
        log_path = tmp_path / "engine.log"
        engine = start_engine(cfg, log_path, "--duration", "45")
        try:
            wait_until(lambda: "detect" in log_path.read_text(errors="replace"), 60, "the engine detects")
            filler = fill(disk, "filler", leave_bytes=6 * MB)  # below min_free_mb before the crowd comes
            wait_until(lambda: horn.announcements >= 1, 40, "the gathering is announced on the low disk")
            body = healthz(web_port)
            assert body["status"] == "degraded", body
            engine_health = body["engine"]
            assert isinstance(engine_health, dict) and "disk_full" in str(engine_health["media_problem"])
            full = fill(disk, "filler2")  # now truly full: nothing may crash
            time.sleep(8)
            assert engine.poll() is None, log_path.read_text(errors="replace")[-3000:]
            full.unlink()
            filler.unlink()
            assert engine.wait(60) == 0, log_path.read_text(errors="replace")[-3000:]
        finally:
            stop(engine)
            horn.close()
        log = log_path.read_text(errors="replace")
        assert "Traceback" not in log, log[-3000:]
        assert processes_mentioning(str(disk / "data" / "redis")) == [], "the embedded Redis stopped cleanly"
        [record] = incidents_via_cli(cfg)
        assert record["kind"] == "gathering"
        assert record["details"]["clip_error"].startswith("disk_full"), record["details"]
        assert record["clip"] is None and record["snapshot"] is None
        assert [a["ok"] for a in record["announcements"]] == [True]
        assert not list((disk / "data").rglob("*.part")), "no half-written file left"
        assert_kept_detect_rate(log, configured_fps=2.0)
