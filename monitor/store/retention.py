"""Media retention: delete old incident clips and snapshots, or the oldest ones beyond a disk budget.

Footage of villagers should not be kept longer than needed, and the disk must not fill up, but the incident
record is the center's log and stays. An expired incident gets ``media_expired: true``, ``clip`` and
``snapshot`` set to null (so the web app stops offering them) and the original paths under
``details.expired_media``.

Only paths taken from incident records are ever deleted: the record is updated first and the file removed
after, so the web page never links to a file that is gone; files whose deletion failed are retried on the
next pass from ``details.expired_media``. Open incidents are skipped: their clip may still be being written.
A clip's browser-playable copy (``clips/<id>.h264.mp4``, or its ``.part`` while being made) goes with the clip.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from monitor.config.retention import RetentionConfig
from monitor.incident import iso
from monitor.ingest.transcode import copy_path, partial_path
from monitor.store.incidents import IncidentStore

log = logging.getLogger(__name__)

DAY_S = 86400.0
MEDIA_FIELDS = ("clip", "snapshot")


@dataclass(frozen=True, slots=True)
class MediaRecord:
    """What planning needs to know about one incident's media."""

    incident_id: str
    opened_ts: float
    size_bytes: int  # clip (with its playable copy) + snapshot bytes on disk now
    open: bool = False  # still open: never expired


@dataclass(slots=True)
class RetentionReport:
    """What one pass did."""

    expired: list[str] = field(default_factory=list)
    deleted: list[Path] = field(default_factory=list)
    freed_bytes: int = 0
    errors: list[str] = field(default_factory=list)


def plan_retention(
    records: Iterable[MediaRecord], now: float, retention_days: float | None, max_bytes: int | None
) -> list[str]:
    """Ids of incidents whose media should go, oldest first: too old, then the oldest beyond the budget."""
    records = list(records)
    candidates = sorted((r for r in records if not r.open), key=lambda r: (r.opened_ts, r.incident_id))
    cutoff = -float("inf") if retention_days is None else now - retention_days * DAY_S
    expired = [r for r in candidates if r.opened_ts < cutoff]
    kept = [r for r in candidates if r.opened_ts >= cutoff]
    if max_bytes is not None:
        total = sum(r.size_bytes for r in kept) + sum(r.size_bytes for r in records if r.open)
        for r in kept:  # oldest first
            if total <= max_bytes:
                break
            expired.append(r)
            total -= r.size_bytes
    return [r.incident_id for r in expired]


def _file_size(path: str | None) -> int:
    if not path:
        return 0
    try:
        st = os.stat(path)
    except OSError:
        return 0
    return st.st_size if os.path.isfile(path) else 0


def _files(name: str, path: str) -> list[str]:
    """The files a media field stands for: a clip with its playable copy (made later, beside it)."""
    if name != "clip":
        return [path]
    copy = copy_path(Path(path))
    return [path, str(copy), str(partial_path(copy))]


def media_records(incidents: Iterable[Mapping[str, Any]]) -> Iterator[MediaRecord]:
    """Planning input for the incidents that still have a clip or snapshot."""
    for rec in incidents:
        paths = {f: rec.get(f) for f in MEDIA_FIELDS}
        if any(paths.values()):
            size = sum(_file_size(file) for f, p in paths.items() if p for file in _files(f, p))
            yield MediaRecord(rec["id"], float(rec["opened_ts"]), size, rec.get("closed_ts") is None)


def _expire(rec: dict[str, Any], now: float) -> None:
    """Record change: move the media paths under details and mark the incident."""
    moved = rec["details"].setdefault("expired_media", {})
    for name in MEDIA_FIELDS:
        if rec.get(name):
            moved[name] = rec[name]
        rec[name] = None
    moved["expired_at"] = iso(now)
    rec["media_expired"] = True


def _within(path: Path, root: Path | None) -> bool:
    return root is None or path.resolve().is_relative_to(root.resolve())


def _delete(path_text: str, media_root: Path | None, report: RetentionReport) -> None:
    """Delete one former media file; a path outside ``media_root`` or not a regular file is left alone."""
    path = Path(path_text)
    try:
        if not _within(path, media_root):
            report.errors.append(f"{path}: outside the media directory, not deleted")
            return
        if path.is_symlink() or not path.is_file():
            return  # already gone (or not ours to follow)
        size = path.stat().st_size
        path.unlink()
    except OSError as exc:
        report.errors.append(f"{path}: {exc.strerror or exc}")
        return
    report.deleted.append(path)
    report.freed_bytes += size


def _leftovers(rec: Mapping[str, Any]) -> list[str]:
    """Former media paths of an expired incident that may still need deleting."""
    moved = rec.get("details", {}).get("expired_media", {})
    return [file for name in MEDIA_FIELDS if moved.get(name) for file in _files(name, moved[name])]


def apply_retention(
    store: IncidentStore, config: RetentionConfig, now: float | None = None, media_root: Path | None = None
) -> RetentionReport:
    """One pass: plan from the records and file sizes, mark the chosen incidents, then delete their files.

    ``media_root`` (the engine's data directory) is a guard against records that point elsewhere.
    """
    now = time.time() if now is None else now
    report = RetentionReport()
    incidents = list(store.list(newest_first=False))
    plan = plan_retention(media_records(incidents), now, config.retention_days, config.max_media_bytes)
    for incident_id in plan:
        try:
            store.update(incident_id, lambda rec: _expire(rec, now), "incident_media_expired")
        except KeyError:
            continue  # deleted meanwhile
        after = store.get(incident_id)
        for path in _leftovers(after or {}):
            _delete(path, media_root, report)
        report.expired.append(incident_id)
    for rec in incidents:  # deletions that failed on an earlier pass
        if rec.get("media_expired") and rec["id"] not in plan:
            for path in _leftovers(rec):
                _delete(path, media_root, report)
    if report.expired or report.errors:
        log.info(
            "retention: expired media of %d incident(s), deleted %d file(s), freed %.1f MB; %d problem(s)",
            len(report.expired),
            len(report.deleted),
            report.freed_bytes / 1e6,
            len(report.errors),
        )
    for err in report.errors:
        log.warning("retention: %s", err)
    return report


class RetentionWorker:
    """Runs ``apply_retention`` every ``interval_s`` on a daemon thread (first pass right after start).

    A failed pass (Redis unreachable, a file system error, anything else) is logged and counted in
    ``failures`` / ``last_error``; the thread carries on and tries again at the next interval.
    """

    def __init__(self, store: IncidentStore, config: RetentionConfig, media_root: Path | None = None) -> None:
        self.store, self.config, self.media_root = store, config, media_root
        self.last: RetentionReport | None = None
        self.passes = 0  # passes that completed
        self.failures = 0  # passes that failed
        self.last_error: str | None = None  # of the latest pass; None once a pass succeeds again
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)

    def start(self) -> None:
        """Begin the periodic passes (does nothing when no limit is configured)."""
        if self.config.retention_days is not None or self.config.max_media_bytes is not None:
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the pass in progress, if any."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.config.interval_s)

    def run_once(self) -> RetentionReport | None:
        """One pass that never raises (its report, or None when it failed)."""
        try:
            report = apply_retention(self.store, self.config, media_root=self.media_root)
        except (redis.RedisError, OSError) as exc:  # Redis down for a moment, disk trouble: next interval
            self._failed(f"{type(exc).__name__}: {exc}")
            log.warning(
                "retention pass failed (%d so far), retrying in %g s: %s", self.failures, self.config.interval_s, exc
            )
            return None
        except Exception as exc:  # a bug or an unexpected record must not end retention for good
            self._failed(f"{type(exc).__name__}: {exc}")
            log.exception("retention pass failed (%d so far)", self.failures)
            return None
        self.last, self.last_error = report, None
        self.passes += 1
        return report

    def _failed(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
