"""Issue-4 rules on real footage through the whole engine: grouped gathering, checkpoint staffing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from detectors import Detector
from monitor.config import load_config
from monitor.engine import Engine
from monitor.store.incidents import IncidentStore
from tests.support.media import CROWD, LOWER_ZONE, QUIET, cut_scenario

pytestmark = pytest.mark.slow


def run(path: Path, detector: Detector, redis_url: str, seconds: float) -> list[dict[str, Any]]:
    Engine(load_config(path), detector=detector).run(duration_s=seconds)
    return sorted(IncidentStore(redis.Redis.from_url(redis_url)).list(), key=lambda r: r["opened_ts"])


def camera(video: Path) -> dict[str, Any]:
    return {"url": str(video), "speed": 2.0, "loop": False, "zones": {"lower": {"points": LOWER_ZONE}}}


def test_a_real_group_opens_one_gathering_and_closes_it(
    square_mp4: Path, tmp_path: Path, write_config: Callable[..., Path], detector: Detector, redis_url: str
) -> None:
    # 50.5-61.5 s: a couple walks side by side across the square (a group of 2-3); then 5.6 s without groups
    scenario = cut_scenario(square_mp4, [CROWD, QUIET], tmp_path / "group.mp4")
    rule = {
        "kind": "gathering",
        "camera": "plaza",
        "min_people": 2,
        "dwell_s": 4,
        "clear_s": 3,
        "grouping": {"k": 1.0, "min_size": 2},
    }
    path = write_config({"redis_url": redis_url, "cameras": {"plaza": camera(scenario)}, "rules": [rule]})
    [incident] = run(path, detector, redis_url, seconds=12)
    assert incident["status"] == "closed" and incident["details"]["closed_by"] == "rule"
    assert 2 <= incident["peak_count"] <= 4, "the group, not everybody in view"
    assert len(incident["details"]["group_polygon"]) >= 2, "where the group stood"
    assert len(incident["details"]["track_ids"]) >= 2, "who was in it"


def test_staff_leaving_the_checkpoint_gives_one_incident_with_the_right_duration(
    square_mp4: Path, tmp_path: Path, write_config: Callable[..., Path], detector: Detector, redis_url: str
) -> None:
    # 11 s with 4-6 people in the checkpoint zone, 5.6 s with 1-2, then 11 s with 4-6 again
    scenario = cut_scenario(square_mp4, [CROWD, QUIET, CROWD], tmp_path / "staffing.mp4")
    rule = {
        "kind": "checkpoint_staffing",
        "camera": "plaza",
        "zone": "lower",
        "min_staff": 3,
        "unstaffed_s": 2,
        "restored_s": 1,
        "tolerance_s": 1,
        "schedule": {"windows": [{"start": "00:00", "end": "24:00"}]},
    }
    path = write_config({"redis_url": redis_url, "cameras": {"plaza": camera(scenario)}, "rules": [rule]})
    [incident] = run(path, detector, redis_url, seconds=17)
    assert incident["kind"] == "checkpoint_unstaffed" and incident["status"] == "closed"
    assert incident["details"]["closed_by"] == "rule" and incident["details"]["reason"] == "restored"
    duration = incident["closed_ts"] - incident["opened_ts"]  # camera clock: the 5.6 s without enough staff
    assert 4.0 <= duration <= 7.5, f"unstaffed for {duration:.1f} s"
