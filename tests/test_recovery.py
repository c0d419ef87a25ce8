"""Crash recovery in the engine process: what the outbox held open is resumed or closed, never left open."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import redis

from detectors import Detector
from monitor.config import load_config
from monitor.engine import RESUME_WITHIN_S, Engine
from monitor.incident import Incident, new_incident_id
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
