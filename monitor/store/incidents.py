"""Incidents in Redis: one JSON record per incident, a time index, and an event stream.

Key layout (all names here, nowhere else):
  vm:incident:<id>   JSON record            vm:incidents   ZSET id -> opened_ts
  vm:events          STREAM of changes      vm:camera:<n>  HASH live camera status (expires)
  vm:speaker:<n>     HASH speaker health: ok, problem, checked_ts (expires)
  vm:cameras         SET of camera names (a camera without a status hash has no engine reporting it)
Updates are optimistic transactions (WATCH/MULTI), so several engines can share one Redis.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import redis

from monitor.types import PlaybackResult

PREFIX = "vm"
INDEX = f"{PREFIX}:incidents"
CAMERAS = f"{PREFIX}:cameras"
EVENTS = f"{PREFIX}:events"
EVENTS_MAXLEN = 100_000


def incident_key(incident_id: str) -> str:
    """Redis key of one incident record."""
    return f"{PREFIX}:incident:{incident_id}"


def speaker_key(speaker: str) -> str:
    """Redis key of a speaker's latest health check."""
    return f"{PREFIX}:speaker:{speaker}"


def camera_key(camera: str) -> str:
    """Redis key of a camera's live status."""
    return f"{PREFIX}:camera:{camera}"


def iso(ts: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 with the local UTC offset."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


def new_incident_id(ts: float) -> str:
    """Time-sortable, unique without coordination: milliseconds plus random bits."""
    return f"{int(ts * 1000):013d}-{secrets.token_hex(3)}"


class IncidentStore:
    """Incident records and events; every method is one short Redis round trip or transaction."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def open(
        self,
        *,
        kind: str,
        rule: str,
        camera: str,
        zone: str | None,
        ts: float,
        count: int,
        details: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create an open incident and announce it on the event stream."""
        incident_id = new_incident_id(ts)
        record: dict[str, Any] = {
            "id": incident_id,
            "kind": kind,
            "rule": rule,
            "camera": camera,
            "zone": zone,
            "status": "open",
            "opened_at": iso(ts),
            "closed_at": None,
            "opened_ts": ts,
            "closed_ts": None,
            "peak_count": count,
            "clip": None,
            "snapshot": None,
            "announcements": [],
            "details": dict(details or {}),
        }
        pipe = self.r.pipeline()
        pipe.set(incident_key(incident_id), json.dumps(record))
        pipe.zadd(INDEX, {incident_id: ts})
        pipe.xadd(
            EVENTS,
            {"type": "incident_opened", "id": incident_id, "camera": camera, "kind": kind},
            maxlen=EVENTS_MAXLEN,
            approximate=True,
        )
        pipe.execute()
        return record

    def get(self, incident_id: str) -> dict[str, Any] | None:
        """One incident record, or None."""
        raw = self.r.get(incident_key(incident_id))
        return None if raw is None else dict(json.loads(raw))

    def update(self, incident_id: str, change: Callable[[dict[str, Any]], None], event: str | None = None) -> None:
        """Apply ``change`` to the record atomically (retried if another writer got there first)."""
        key = incident_key(incident_id)

        def txn(pipe: redis.client.Pipeline) -> None:
            raw = pipe.get(key)
            if raw is None:
                raise KeyError(f"no incident {incident_id}")
            record = json.loads(raw)
            change(record)
            pipe.multi()
            pipe.set(key, json.dumps(record))
            if event:
                pipe.xadd(
                    EVENTS,
                    {"type": event, "id": incident_id, "camera": record["camera"]},
                    maxlen=EVENTS_MAXLEN,
                    approximate=True,
                )

        self.r.transaction(txn, key)

    def close(
        self, incident_id: str, ts: float, peak: int, reason: str = "rule", details: Mapping[str, Any] | None = None
    ) -> None:
        """Mark an incident closed (a status set by staff, such as acknowledged, is kept).

        ``reason`` says who closed it: the rule, or the engine shutting down while it was open.
        """

        def change(rec: dict[str, Any]) -> None:
            rec.update(closed_at=iso(ts), closed_ts=ts, peak_count=max(rec["peak_count"], peak))
            rec["details"].update(details or {}, closed_by=reason)
            if rec["status"] == "open":
                rec["status"] = "closed"

        self.update(incident_id, change, "incident_closed")

    def set_peak(self, incident_id: str, peak: int) -> None:
        """Raise the incident's peak count."""
        self.update(incident_id, lambda rec: rec.update(peak_count=max(rec["peak_count"], peak)))

    def set_media(self, incident_id: str, **paths: str | None) -> None:
        """Record where the clip and/or snapshot were written."""
        self.update(incident_id, lambda rec: rec.update(paths), "incident_media")

    def add_announcement(self, incident_id: str, result: PlaybackResult) -> None:
        """Record one playback attempt on the incident."""
        entry = {
            "speaker": result.speaker,
            "started_at": iso(result.started_at),
            "ended_at": iso(result.ended_at),
            "ok": result.ok,
            "error": result.error,
        }
        self.update(incident_id, lambda rec: rec["announcements"].append(entry), "announcement")

    def list(self, newest_first: bool = True, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Incident records in time order."""
        end = -1 if limit is None else limit - 1
        ids = self.r.zrevrange(INDEX, 0, end) if newest_first else self.r.zrange(INDEX, 0, end)
        yield from self.records([raw.decode() if isinstance(raw, bytes) else str(raw) for raw in ids])

    def records(self, ids: Sequence[str], chunk: int = 200) -> Iterator[dict[str, Any]]:
        """The records of ``ids`` in that order, one MGET per chunk (missing ones skipped)."""
        for start in range(0, len(ids), chunk):
            keys = [incident_key(i) for i in ids[start : start + chunk]]
            for raw in self.r.mget(keys):
                if raw is not None:
                    yield dict(json.loads(raw))

    def publish_camera_status(self, camera: str, status: Mapping[str, str | int | float], ttl_s: int) -> None:
        """Live camera status for dashboards and other machines; expires if the engine dies."""
        key = camera_key(camera)
        pipe = self.r.pipeline()
        pipe.sadd(CAMERAS, camera)
        pipe.hset(key, mapping=cast("Mapping[Any, Any]", status))  # redis' stubs want invariant key types
        pipe.expire(key, ttl_s)
        pipe.execute()

    def publish_speaker_status(self, speaker: str, status: Mapping[str, str | int | float], ttl_s: int) -> None:
        """Latest health check of a speaker; expires if the engine dies."""
        pipe = self.r.pipeline()
        pipe.hset(speaker_key(speaker), mapping=cast("Mapping[Any, Any]", status))
        pipe.expire(speaker_key(speaker), ttl_s)
        pipe.execute()
