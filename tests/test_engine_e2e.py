"""The whole loop on real parts: real footage or a real RTSP camera -> real detector -> rules ->
RTP announcement received on a real socket -> incidents in a real Redis, with clip and snapshot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest
import redis

from detectors import Detector
from monitor.config import load_config
from monitor.engine import Engine
from monitor.store.incidents import IncidentStore, camera_key, speaker_key
from tests.support.media import CROWD, LOWER_ZONE, QUIET, cut_scenario
from tests.support.rtp_listener import RtpListener
from tests.support.rtsp import RtspCamera
from tests.support.waiting import incidents_via_cli

pytestmark = pytest.mark.slow


def config(url: str, horn_port: int, root: Path, **overrides: Any) -> dict[str, Any]:
    """A one-camera config with a gathering rule on the lower part of the image."""
    camera = {"url": url, "detect_fps": 2, "zones": {"lower": {"points": LOWER_ZONE}}, "speakers": ["horn"]}
    rule = {
        "kind": "gathering",
        "camera": "plaza",
        "zone": "lower",
        "min_people": 4,
        "dwell_s": 4,
        "clear_s": 3,
        "cooldown_s": 120,
        "announcement": str(root / "announcements/disperse_en.wav"),
    }
    cfg: dict[str, Any] = {
        "data_dir": "./data",
        "clips": {"pre_roll_s": 5, "post_roll_s": 2},
        "status_interval_s": 1,
        "cameras": {"plaza": camera},
        "speakers": {"horn": {"kind": "rtp", "host": "127.0.0.1", "port": horn_port, "codec": "pcmu"}},
        "rules": [rule],
    }
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        target = cfg["cameras"]["plaza"] if section == "camera" else cfg["rules"][0] if section == "rule" else cfg
        target[name or section] = value
    return cfg


def test_gathering_on_real_footage_opens_once_announces_once_per_cooldown_and_closes(
    root: Path, square_mp4: Path, tmp_path: Path, write_config: Callable[..., Path], detector: Detector
) -> None:
    # twice: 11 s with 4-6 people in the zone, then 5.6 s with 1-2; played once at double speed
    scenario = cut_scenario(square_mp4, [CROWD, QUIET, CROWD, QUIET], tmp_path / "gathering.mp4")
    horn = RtpListener()
    path = write_config(config(str(scenario), horn.port, root, camera__speed=2.0, camera__loop=False))
    engine = Engine(load_config(path), detector=detector)
    engine.run(duration_s=20)
    horn.close()

    records = sorted(incidents_via_cli(path), key=lambda r: r["opened_ts"])  # after the engine's Redis stopped
    assert [r["status"] for r in records] == ["closed", "closed"], records
    assert all(r["details"]["closed_by"] == "rule" for r in records), "each gathering closed by itself"
    assert all(r["kind"] == "gathering" and r["camera"] == "plaza" and r["zone"] == "lower" for r in records)
    first, second = records
    for record in records:  # opened once the crowd stayed 4 s, closed 3 s into the quiet part (camera clock)
        assert 4 <= record["peak_count"] <= 7
        assert 6 < record["closed_ts"] - record["opened_ts"] < 16
    assert second["opened_ts"] - first["opened_ts"] == pytest.approx(16.6, abs=1.5), "one incident per gathering"
    assert [a["ok"] for a in first["announcements"]] == [True]
    assert first["announcements"][0]["speaker"] == "horn"
    assert second["announcements"] == [], "within the cooldown: logged but not announced again"
    assert horn.announcements == 1
    for record in records:
        assert Path(record["snapshot"]).stat().st_size > 10_000
        with av.open(record["clip"]) as clip:
            assert sum(1 for _ in clip.decode(video=0)) > 20


def test_rtsp_camera_counts_people_and_clip_covers_preroll(
    root: Path,
    square_mp4: Path,
    tmp_path: Path,
    write_config: Callable[..., Path],
    detector: Detector,
    rtsp_cameras: Callable[[dict[str, Path]], RtspCamera],
    redis_url: str,
) -> None:
    scenario = cut_scenario(square_mp4, [QUIET, CROWD], tmp_path / "quiet_then_crowd.mp4")
    server = rtsp_cameras({"plaza": scenario})
    horn = RtpListener()
    path = write_config(config(server.url("plaza"), horn.port, root, redis_url=redis_url))
    engine = Engine(load_config(path), detector=detector)
    engine.run(duration_s=17)
    horn.close()

    cam = engine.cameras["plaza"]
    assert cam.detections >= 20, "about 2 detections per second from the RTSP stream"
    assert cam.last is not None and len(cam.last.detections) >= 1, "people are counted on the live stream"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    status = client.hgetall(camera_key("plaza"))
    assert status["online"] == "1" and float(status["detect_fps"]) > 1.0
    assert Path(status["snapshot"]).stat().st_size > 10_000, "a live annotated snapshot for the dashboard"
    assert client.hgetall(speaker_key("horn"))["ok"] == "1", "speaker health is checked and shared"
    store = IncidentStore(redis.Redis.from_url(redis_url))
    records = list(store.list())
    assert len(records) == 1, records
    record = records[0]
    assert 4 <= record["peak_count"] <= 7, "the crowd part of the stream was counted"
    assert record["announcements"][0]["ok"] is True
    assert horn.announcements == 1
    assert record["details"]["clip_start"] is not None
    clip_start = store.get(record["id"])["details"]["clip_start"]  # type: ignore[index]
    opened = record["opened_at"]
    assert clip_start < opened
    with av.open(record["clip"]) as clip:
        stream = clip.streams.video[0]
        frames = [f for f in clip.decode(stream)]
        duration = float(frames[-1].pts * stream.time_base) - float(frames[0].pts * stream.time_base)
        assert (frames[0].width, frames[0].height) == (768, 576)
        assert frames[0].key_frame, "clips start on a keyframe"
    from datetime import datetime

    preroll = (datetime.fromisoformat(opened) - datetime.fromisoformat(clip_start)).total_seconds()
    assert preroll >= 5, f"clip starts {preroll:.1f} s before the rule fired"
    assert duration >= 5 + 2 - 0.5, f"clip is {duration:.1f} s: pre-roll plus post-roll"
