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
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import redis

from monitor.incident import Incident, IncidentChange

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


class IncidentStore:
    """Incident records and events; every method is one short Redis round trip or transaction."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

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

    def apply(self, change: IncidentChange) -> bool:
        """Apply one engine change atomically, unless the record already has it (False: a replay, skipped).

        Changes of one incident arrive in ``seq`` order from the engine's outbox; the record keeps the highest
        ``seq`` applied, so delivering the same change twice (after a crash or a lost reply) changes nothing.
        Fields staff own (a reviewed status, notes, audit) are kept: only the change's own fields are touched.
        """
        key = incident_key(change.incident_id)

        def txn(pipe: redis.client.Pipeline) -> bool:
            raw = pipe.get(key)
            if change.kind == "opened":
                if raw is not None:
                    return False
                record = dict(change.data["record"])
            else:
                if raw is None:
                    raise KeyError(f"no incident {change.incident_id} for change {change.key}")
                current = Incident.from_record(json.loads(raw))
                if current.seq >= change.seq:
                    return False
                record = current.apply(change).to_record()
            pipe.multi()
            pipe.set(key, json.dumps(record, ensure_ascii=False))
            if change.kind == "opened":
                pipe.zadd(INDEX, {change.incident_id: float(record["opened_ts"])})
                pipe.sadd(CAMERAS, record["camera"])
            fields = {"type": change.event, "id": change.incident_id, "camera": record["camera"]}
            if change.kind == "opened":
                fields["kind"] = record["kind"]
            pipe.xadd(EVENTS, fields, maxlen=EVENTS_MAXLEN, approximate=True)  # type: ignore[arg-type]
            return True

        typed_txn = cast("Callable[[redis.client.Pipeline], None]", txn)  # redis' stubs type the callable as None
        return bool(self.r.transaction(typed_txn, key, value_from_callable=True))

    def incident(self, incident_id: str) -> Incident | None:
        """One incident, typed, or None."""
        record = self.get(incident_id)
        return None if record is None else Incident.from_record(record)

    def list(self, newest_first: bool = True, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Incident records in time order."""
        end = -1 if limit is None else limit - 1
        ids = self.r.zrevrange(INDEX, 0, end) if newest_first else self.r.zrange(INDEX, 0, end)
        yield from self.records([raw.decode() if isinstance(raw, bytes) else str(raw) for raw in ids])

    def incidents(self, newest_first: bool = True, limit: int | None = None) -> Iterator[Incident]:
        """Incidents in time order, typed."""
        for record in self.list(newest_first, limit):
            yield Incident.from_record(record)

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
