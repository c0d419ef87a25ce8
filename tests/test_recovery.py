"""Crash recovery in the engine process: what the outbox held open is resumed or closed, never left open."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import redis

from detectors import Detector
from monitor.config import load_config
from monitor.engine import Engine
from monitor.incident import Incident, new_incident_id
from monitor.runtime.recovery import RESUME_WITHIN_S, last_announced, plan_recovery
from monitor.store.incidents import IncidentStore
from monitor.store.outbox import Outbox
from tests.support.media import LOWER_ZONE


def test_an_incident_left_open_by_an_engine_down_too_long_is_closed_as_recovered(
    tmp_path: Path, square_mp4: Path, redis_url: str, write_config: Callable[..., Path], detector: Detector
) -> None:
    path = write_config(
        {
            "redis_url": redis_url,
            "data_dir": "./data",
            "cameras": {"plaza": {"url": str(square_mp4), "zones": {"lower": {"points": LOWER_ZONE}}}},
            "rules": [{"kind": "gathering", "camera": "plaza", "zone": "lower", "min_people": 40, "dwell_s": 5}],
        }
    )
    loaded = load_config(path)
    rule_id = loaded.config.rules[0].rule_id
    died_at = time.time() - RESUME_WITHIN_S - 600
    outbox = Outbox(loaded.data_dir / "outbox.sqlite3")  # what a crashed engine left: undelivered, still open
    gathering, opened = Incident(new_incident_id(died_at - 60), "gathering", rule_id, "plaza", "lower",
                                 died_at - 60, peak_count=6).opening()  # fmt: skip
    outbox.put(opened, gathering)
    gone, opened_gone = Incident(new_incident_id(died_at - 30), "gathering", "gathering/removed/x", "removed", "x",
                                 died_at - 30, peak_count=5).opening()  # fmt: skip
    outbox.put(opened_gone, gone)
    outbox.heartbeat(died_at)
    outbox.close()

    Engine(loaded, detector=detector).run(duration_s=3)

    records = {r["id"]: r for r in IncidentStore(redis.Redis.from_url(redis_url)).list()}
    assert set(records) == {gathering.id, gone.id}
    for incident_id, reason in [(gathering.id, "was down"), (gone.id, "no longer configured")]:
        record = records[incident_id]
        assert record["status"] == "closed" and record["details"]["closed_by"] == "recovered", record
        assert reason in record["details"]["reason"]
        assert abs(record["closed_ts"] - died_at) < 1, "closed when the engine was last alive, not at the restart"
    assert Outbox(loaded.data_dir / "outbox.sqlite3").open_incidents() == []


def story(kind: str = "gathering", rule: str = "g", opened: float = 1000.0, **fields: object) -> Incident:
    return Incident(f"{int(opened)}-a", kind, rule, "plaza", None, opened, peak_count=5, **fields)  # type: ignore[arg-type]


def test_the_recovery_plan() -> None:
    incidents = [
        story(),  # engine back 60 s after its last heartbeat: carry on
        story("camera_offline", "camera_offline/plaza", 900.0),  # an outage: always carried on
        story(rule="gone"),  # its rule was removed
    ]
    plan = plan_recovery(incidents, {"g", "camera_offline/plaza"}, now=1160.0, last_alive=1100.0)
    assert [(r.action, r.at) for r in plan] == [("resume", 1160.0), ("resume", 1160.0), ("close", 1100.0)]
    assert [r.clip_lost for r in plan] == [True, False, True]
    rules = {"g", "camera_offline/plaza"}
    later = plan_recovery(incidents[:2], rules, now=1100.0 + RESUME_WITHIN_S + 1, last_alive=1100.0)
    assert [r.action for r in later] == ["close", "resume"], "a gathering nobody saw for minutes is not carried on"
    assert "was down 121 s" in later[0].reason


def test_last_announced_counts_a_decision_made_before_the_crash() -> None:
    at = "2026-11-27T10:00:05.000+00:00"
    decided = story(timeline=({"at": at, "event": "announcement_decision", "reason": "announce"},))
    held_back = story(timeline=({"at": at, "event": "announcement_decision", "reason": "suppressed: cooldown"},))
    assert last_announced(decided) == datetime.fromisoformat(at).timestamp()
    assert last_announced(held_back) is None
