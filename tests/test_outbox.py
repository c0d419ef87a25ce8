"""The durable outbox and idempotent delivery, on a real SQLite file and a real redis-server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from monitor.incident import AnnouncementResult, Incident, IncidentChange, new_incident_id
from monitor.store.incidents import IncidentStore
from monitor.store.outbox import Delivery, Outbox
from monitor.types import PlaybackResult
from tests.support.redis_server import RedisProcess
from tests.support.waiting import wait_until


def incident_story(ts: float = 1_700_000_000.0) -> list[tuple[IncidentChange, Incident]]:
    """Open, a peak, a played announcement, a clip, closed: each change with the incident after it."""
    new = Incident(new_incident_id(ts), "gathering", "gathering/plaza/lower", "plaza", "lower", ts, peak_count=4)
    incident, change = new.opening()
    story = [(change, incident)]
    result = AnnouncementResult.of(PlaybackResult("horn", ts + 1, ts + 5, True)).to_record()
    for kind, data in [
        ("peak", {"peak": 7}),
        ("announcement", {"result": result}),
        ("media", {"clip": "/data/clips/x.mp4", "details": {"clip_start": "a"}}),
        ("closed", {"ts": ts + 60, "peak": 7, "closed_by": "rule", "details": {}}),
    ]:
        incident, change = incident.change(kind, **data)  # type: ignore[arg-type]
        story.append((change, incident))
    return story


def test_replayed_changes_change_nothing(redis_url: str) -> None:
    store = IncidentStore(redis.Redis.from_url(redis_url))
    story = incident_story()
    assert all(store.apply(change) for change, _ in story)
    assert not any(store.apply(change) for change, _ in story), "a replay is recognised and skipped"
    record = store.get(story[0][0].incident_id)
    assert record is not None
    assert record == story[-1][1].to_record()
    assert len(record["announcements"]) == 1 and record["peak_count"] == 7 and record["status"] == "closed"
    assert Incident.from_record(record) == story[-1][1]


def test_a_reviewed_status_survives_the_engine_closing_the_incident(redis_url: str) -> None:
    store = IncidentStore(redis.Redis.from_url(redis_url))
    story = incident_story()
    for change, _ in story[:-1]:
        store.apply(change)
    incident_id = story[0][0].incident_id
    store.update(incident_id, lambda rec: rec.update(status="acknowledged", audit=[{"user": "li"}]))
    store.apply(story[-1][0])
    record = store.get(incident_id)
    assert record is not None
    assert record["status"] == "acknowledged" and record["audit"] == [{"user": "li"}] and record["closed_ts"]


def test_the_outbox_keeps_order_and_open_incidents_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    story = incident_story()
    outbox = Outbox(path)
    for change, incident in story[:3]:
        outbox.put(change, incident)
    outbox.heartbeat(123.5)
    outbox.close()  # as if the process died here
    again = Outbox(path)
    assert again.pending() == 3 and again.last_alive() == 123.5
    assert [i.id for i in again.open_incidents()] == [story[0][0].incident_id]
    seen: list[str] = []
    assert again.deliver(lambda change: seen.append(change.key) or True) == 3
    assert seen == [change.key for change, _ in story[:3]]
    again.put(*story[-1])
    assert again.open_incidents() == [], "closed: no longer this engine's to recover"


def test_changes_wait_in_memory_when_sqlite_cannot_write_and_keep_their_order(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    change, incident = incident_story()[0]
    outbox.put(change, incident)
    (pages,) = outbox._db.execute("PRAGMA page_count").fetchone()
    outbox._db.execute(f"PRAGMA max_page_count = {pages}")  # the database cannot grow: SQLITE_FULL, as on a full disk
    for i in range(4):
        incident, change = incident.change("timeline", entry={"at": str(i), "event": "x" * 20_000})
        outbox.put(change, incident)  # the first fails: from then on they queue in memory, in order
    assert outbox.problem is not None and "full" in outbox.problem
    assert outbox.pending() == 5
    seen: list[int] = []
    while outbox.pending():
        outbox.deliver(lambda change: seen.append(change.seq) or True)
    assert seen == [1, 2, 3, 4, 5]


def test_changes_kept_in_memory_move_to_disk_once_it_takes_writes_again(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path)
    change, incident = incident_story()[0]
    outbox.put(change, incident)
    (pages,) = outbox._db.execute("PRAGMA page_count").fetchone()
    outbox._db.execute(f"PRAGMA max_page_count = {pages}")
    incident, change = incident.change("timeline", entry={"at": "1", "event": "x" * 20_000})
    outbox.put(change, incident)
    assert outbox.problem is not None
    outbox._db.execute("PRAGMA max_page_count = 1073741823")  # room again
    incident, change = incident.change("peak", peak=9)
    outbox.put(change, incident)
    assert outbox.problem is None
    outbox.close()
    again = Outbox(path)  # all three survived a restart, in order
    seen: list[int] = []
    again.deliver(lambda change: seen.append(change.seq) or True)
    assert seen == [1, 2, 3] and again.open_incidents()[0].peak_count == 9


def test_delivery_waits_out_a_killed_redis_and_counts_the_errors(tmp_path: Path, redis_process: RedisProcess) -> None:
    store = IncidentStore(redis.Redis.from_url(redis_process.url, socket_timeout=1, socket_connect_timeout=1))
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    errors: list[Exception] = []
    delivery = Delivery(outbox, store.apply, errors.append, max_backoff_s=0.5).start()
    try:
        story = incident_story(time.time())
        redis_process.signal(9)
        for change, incident in story:
            outbox.put(change, incident)
        wait_until(lambda: len(errors) >= 2, 10, "delivery attempts fail while Redis is down")
        assert outbox.pending() == len(story) and delivery.last_error
        redis_process.start()
        assert delivery.flush(10), "all delivered once Redis is back"
        record = redis_process.client().get(f"vm:incident:{story[0][0].incident_id}")
        assert record is not None and Incident.from_record(json.loads(record)) == story[-1][1]
        assert delivery.last_error is None
    finally:
        delivery.stop()


@pytest.mark.parametrize("kind", ["gathering", "camera_offline"])
def test_old_records_without_a_schema_version_read_back(kind: str) -> None:
    old = {"id": "1-a", "kind": kind, "rule": "r", "camera": "c", "zone": None, "status": "open",
           "opened_at": "x", "closed_at": None, "opened_ts": 5.0, "closed_ts": None, "peak_count": 3,
           "clip": None, "snapshot": None, "announcements": [], "details": {}, "notes": ["n"]}  # fmt: skip
    incident = Incident.from_record(old)
    assert incident.seq == 0 and incident.extra == {"notes": ["n"]}
    assert incident.to_record()["schema"] == 2 and incident.to_record()["notes"] == ["n"]
