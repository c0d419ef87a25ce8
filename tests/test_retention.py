"""Retention on real files and a real Redis: old or over-budget media goes, records and other files stay."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from monitor.config.retention import RetentionConfig
from monitor.incident import Incident, new_incident_id
from monitor.store.embedded import EmbeddedRedis
from monitor.store.incidents import IncidentStore
from monitor.store.retention import (
    DAY_S,
    MediaRecord,
    RetentionWorker,
    apply_retention,
    plan_retention,
)

NOW = 1_720_000_000.0
CLIP_BYTES, SNAP_BYTES = 1000, 200


@pytest.fixture
def store(redis_url: str) -> Iterator[IncidentStore]:
    client = redis.Redis.from_url(redis_url)
    yield IncidentStore(client)
    client.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    (path / "clips").mkdir(parents=True)
    (path / "snapshots").mkdir()
    return path


def record(store: IncidentStore, ts: float, closed: bool = True, incident_id: str = "", **media: str) -> str:
    """A gathering incident opened at ``ts`` whose record names ``media`` (clip=..., snapshot=...)."""
    new = Incident(incident_id or new_incident_id(ts), "gathering", "g", "cam", None, ts, peak_count=4)
    opened, change = new.opening()
    store.apply(change)
    with_media, change = opened.change("media", **media)
    store.apply(change)
    if closed:
        store.apply(with_media.change("closed", ts=ts + 60, peak=4, closed_by="rule")[1])
    return opened.id


def incident(store: IncidentStore, data_dir: Path, age_days: float, closed: bool = True) -> str:
    """A gathering incident opened ``age_days`` before NOW, with a real clip and snapshot on disk."""
    ts = NOW - age_days * DAY_S
    name = new_incident_id(ts)
    clip = data_dir / "clips" / f"{name}.mp4"
    snap = data_dir / "snapshots" / f"{name}.jpg"
    clip.write_bytes(b"\0" * CLIP_BYTES)
    snap.write_bytes(b"\xff" * SNAP_BYTES)
    return record(store, ts, closed, name, clip=str(clip), snapshot=str(snap))


def unrelated_files(data_dir: Path) -> list[Path]:
    """Files no incident refers to, some looking exactly like media."""
    files = [data_dir / "clips" / "not-an-incident.mp4", data_dir / "snapshots" / "live-cam.jpg", data_dir / "x.rdb"]
    for f in files:
        f.write_bytes(b"keep")
    return files


def assert_expired(store: IncidentStore, incident_id: str) -> None:
    rec = store.get(incident_id)
    assert rec is not None, "the record is kept"
    assert rec["media_expired"] is True and rec["clip"] is None and rec["snapshot"] is None
    moved = rec["details"]["expired_media"]
    assert moved["clip"].endswith(f"{incident_id}.mp4") and moved["snapshot"].endswith(f"{incident_id}.jpg")
    assert not Path(moved["clip"]).exists() and not Path(moved["snapshot"]).exists()


def assert_kept(store: IncidentStore, incident_id: str) -> None:
    rec = store.get(incident_id)
    assert rec is not None and not rec.get("media_expired")
    assert Path(rec["clip"]).stat().st_size == CLIP_BYTES and Path(rec["snapshot"]).exists()


def test_age_based_retention(store: IncidentStore, data_dir: Path) -> None:
    old, older, recent = (incident(store, data_dir, d) for d in (8, 10, 1))
    others = unrelated_files(data_dir)
    report = apply_retention(store, RetentionConfig(retention_days=7), now=NOW, media_root=data_dir)
    assert report.expired == [older, old]  # oldest first
    assert report.freed_bytes == 2 * (CLIP_BYTES + SNAP_BYTES) and len(report.deleted) == 4 and not report.errors
    assert_expired(store, old)
    assert_expired(store, older)
    assert_kept(store, recent)
    assert all(f.read_bytes() == b"keep" for f in others)
    assert [r["id"] for r in store.list()] == [recent, old, older]  # every record is still listed
    again = apply_retention(store, RetentionConfig(retention_days=7), now=NOW, media_root=data_dir)
    assert (again.expired, again.deleted, again.errors) == ([], [], [])


def test_budget_based_retention_goes_oldest_first_and_spares_open_incidents(
    store: IncidentStore, data_dir: Path
) -> None:
    still_open = incident(store, data_dir, 9, closed=False)  # oldest, but its clip may still be written
    ids = [incident(store, data_dir, d) for d in (5, 4, 3, 2)]
    others = unrelated_files(data_dir)
    budget = 3 * (CLIP_BYTES + SNAP_BYTES)  # 5 incidents on disk: 2 must go
    report = apply_retention(store, RetentionConfig(max_media_bytes=budget), now=NOW, media_root=data_dir)
    assert report.expired == ids[:2]
    for i in ids[:2]:
        assert_expired(store, i)
    for i in [still_open, *ids[2:]]:
        assert_kept(store, i)
    assert all(f.read_bytes() == b"keep" for f in others)


def test_paths_outside_the_media_directory_are_never_deleted(store: IncidentStore, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    elsewhere = tmp_path / "precious.txt"
    elsewhere.write_text("not footage")
    record(store, NOW - 30 * DAY_S, clip=str(elsewhere))
    report = apply_retention(store, RetentionConfig(retention_days=7), now=NOW, media_root=data_dir)
    assert elsewhere.read_text() == "not footage"
    assert report.deleted == [] and "outside the media directory" in report.errors[0]


def test_plan_is_pure_and_ordered() -> None:
    recs = [
        MediaRecord("c", NOW - 1 * DAY_S, 100),
        MediaRecord("a", NOW - 3 * DAY_S, 100),
        MediaRecord("b", NOW - 2 * DAY_S, 100),
        MediaRecord("open", NOW - 9 * DAY_S, 100, open=True),
    ]
    assert plan_retention(recs, NOW, None, None) == []
    assert plan_retention(recs, NOW, 2.5, None) == ["a"]
    assert plan_retention(recs, NOW, None, 250) == ["a", "b"]  # 400 on disk, open one included
    assert plan_retention(recs, NOW, 2.5, 250) == ["a", "b"]
    assert plan_retention(recs, NOW, None, 0) == ["a", "b", "c"]  # open incidents are never planned


def test_worker_runs_periodically(store: IncidentStore, data_dir: Path) -> None:
    old = incident(store, data_dir, (NOW - time.time()) / DAY_S + 10)  # ten days before the real now
    worker = RetentionWorker(store, RetentionConfig(retention_days=7, interval_s=0.05), media_root=data_dir)
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while worker.last is None or not worker.last.expired:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        worker.stop()
    assert_expired(store, old)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_worker_survives_redis_going_away_and_comes_back(tmp_path: Path, data_dir: Path) -> None:
    embedded = EmbeddedRedis(tmp_path)  # a real redis-server we can stop and start again
    client = redis.Redis.from_url(embedded.start(), retry=Retry(NoBackoff(), 0))  # fail fast while it is down
    store = IncidentStore(client)
    worker = RetentionWorker(store, RetentionConfig(retention_days=7, interval_s=0.05), media_root=data_dir)
    worker.start()
    try:
        wait_for(lambda: worker.passes >= 1, 5, "a first pass")
        embedded.stop()
        wait_for(lambda: worker.failures >= 3, 5, "failed passes while Redis is down")
        assert worker._thread.is_alive() and "ConnectionError" in (worker.last_error or "")
        embedded.start()  # the same data directory: the worker carries on with it
        old = incident(store, data_dir, (NOW - time.time()) / DAY_S + 10)
        wait_for(lambda: bool(worker.last and worker.last.expired), 5, "a pass after Redis came back")
        assert worker.last_error is None and worker._thread.is_alive()
        assert_expired(store, old)
    finally:
        worker.stop()
        embedded.stop()


class FlakyStore(IncidentStore):
    """Fails the first listings with a disk error and a bug-like error, then works."""

    def __init__(self, client: redis.Redis, errors: list[Exception]) -> None:
        super().__init__(client)
        self.errors = errors

    def list(self, newest_first: bool = True, limit: int | None = None) -> Iterator[dict[str, Any]]:
        if self.errors:
            raise self.errors.pop(0)
        return super().list(newest_first, limit)


def test_worker_survives_os_errors_and_unexpected_ones(redis_url: str, data_dir: Path) -> None:
    store = FlakyStore(redis.Redis.from_url(redis_url), [OSError(5, "Input/output error"), ValueError("bad record")])
    old = incident(store, data_dir, (NOW - time.time()) / DAY_S + 10)
    worker = RetentionWorker(store, RetentionConfig(retention_days=7, interval_s=0.02), media_root=data_dir)
    worker.start()
    try:
        wait_for(lambda: bool(worker.last and worker.last.expired), 5, "a pass after the errors")
    finally:
        worker.stop()
    assert worker.failures == 2 and worker.last_error is None
    assert_expired(store, old)
