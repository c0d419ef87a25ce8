"""Incidents in Redis: one JSON record per incident, a time index, and an event stream.

Key layout (all names here, nowhere else):
  vm:incident:<id>   JSON record            vm:incidents   ZSET id -> opened_ts
  vm:events          STREAM of changes      vm:camera:<n>  HASH live camera status (expires)
  vm:speaker:<n>     HASH speaker health: ok, state, problem, checked_ts (expires)
  vm:speaker-announced:<n>  HASH the speaker's last announcement: at, ts, ok, error, incident, camera
  vm:speaker-tested:<n>     HASH the speaker's last test from the web page: at, ts, ok, error, user
  vm:speaker-audit   LIST of speaker tests (JSON, newest first, capped)
  vm:speaker-busy:<n>       lease held while the web page tests or talks through the speaker (expires; store/talks.py)
  vm:cameras         SET of camera names (a camera without a status hash has no engine reporting it)
  vm:open:<camera>   SET of the camera's open incident ids (what a node taking the camera over carries on)
Updates are optimistic transactions (WATCH/MULTI), so several engines can share one Redis. With ``cluster:`` a
camera's writes carry its owner's fencing token (monitor/store/fencing.py) and stale ones are refused.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import redis

from monitor.incident import Incident, IncidentChange
from monitor.redact import scrub
from monitor.store import fencing

PREFIX = "vm"
INDEX = f"{PREFIX}:incidents"
CAMERAS = f"{PREFIX}:cameras"
EVENTS = f"{PREFIX}:events"
EVENTS_MAXLEN = 100_000
SPEAKER_AUDIT = f"{PREFIX}:speaker-audit"
SPEAKER_AUDIT_MAX = 1000

log = logging.getLogger(__name__)


def incident_key(incident_id: str) -> str:
    """Redis key of one incident record."""
    return f"{PREFIX}:incident:{incident_id}"


def speaker_key(speaker: str) -> str:
    """Redis key of a speaker's latest health check."""
    return f"{PREFIX}:speaker:{speaker}"


def speaker_announced_key(speaker: str) -> str:
    """Redis key of a speaker's last announcement result."""
    return f"{PREFIX}:speaker-announced:{speaker}"


def speaker_lock_key(speaker: str) -> str:
    """Redis key of the speaker-busy lease: a test or a live talk holds it; engine announcements wait for it."""
    return f"{PREFIX}:speaker-busy:{speaker}"


def speaker_tested_key(speaker: str) -> str:
    """Redis key of a speaker's last test from the web page."""
    return f"{PREFIX}:speaker-tested:{speaker}"


@dataclass(frozen=True, slots=True)
class SpeakerRecords:
    """What Redis holds about one speaker (each hash empty when there is none)."""

    health: dict[str, str]
    announced: dict[str, str]
    tested: dict[str, str]
    holder: dict[str, Any] | None = None  # who holds the speaker now (a talk or a test; see ``lock_holder``)


def lock_holder(raw: bytes | str | None) -> dict[str, Any] | None:
    """A speaker lease's value as who holds it: a talk's holder record (``what``, ``user``, ``since``...),
    ``{"what": "test"}`` for a speaker test (its lock carries a random token), None when free."""
    if raw is None:
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        return {"what": "test"}
    return found if isinstance(found, dict) else {"what": "test"}


def announced_entry(record: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, str | int | float]:
    """A speaker's last-announcement hash, from the incident record and one of its announcement results."""
    at = result.get("ended_at") or result.get("started_at") or ""
    try:
        ts = datetime.fromisoformat(at).timestamp() if at else 0.0
    except ValueError:
        ts = 0.0
    return {
        "at": at,
        "ts": ts,
        "ok": int(bool(result.get("ok"))),
        "error": scrub(str(result.get("error") or "")),
        "incident": str(record["id"]),
        "camera": str(record["camera"]),
    }


def camera_key(camera: str) -> str:
    """Redis key of a camera's live status."""
    return f"{PREFIX}:camera:{camera}"


def open_key(camera: str) -> str:
    """Redis key of the set of a camera's open incidents."""
    return f"{PREFIX}:open:{camera}"


class IncidentStore:
    """Incident records and events; every method is one short Redis round trip or transaction.

    ``fence_of`` (clustered engines): the fencing token this node holds for a camera, stamped on its status.
    """

    def __init__(self, client: redis.Redis, fence_of: Callable[[str], int] | None = None) -> None:
        self.r = client
        self.fence_of = fence_of

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

    def apply(self, change: IncidentChange, fence: int | None = None) -> bool:
        """Apply one engine change atomically, unless the record already has it (False: a replay, skipped).

        Changes of one incident arrive in ``seq`` order from the engine's outbox; the record keeps the highest
        ``seq`` applied, so delivering the same change twice (after a crash or a lost reply) changes nothing.
        Fields staff own (a reviewed status, notes, audit) are kept: only the change's own fields are touched.
        An announcement result also becomes its speaker's last announcement, in the same transaction: a speaker's
        results are queued and delivered in the order they were played, so the last one delivered is the latest.
        ``fence``: the writer's token for the incident's camera; one older than the store has seen raises
        ``fencing.StaleWrite`` and writes nothing.
        """
        key = incident_key(change.incident_id)
        camera = ""

        def txn(pipe: redis.client.Pipeline) -> bool:
            nonlocal camera
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
            camera = str(record["camera"])
            raise_fence = fence is not None and fencing.guard(pipe, camera, fence)
            pipe.multi()
            if raise_fence:
                fencing.raise_fence(pipe, camera, fence or 0)
            pipe.set(key, json.dumps(record, ensure_ascii=False))
            if change.kind == "opened":
                pipe.zadd(INDEX, {change.incident_id: float(record["opened_ts"])})
                pipe.sadd(CAMERAS, record["camera"])
            if record.get("closed_ts") is None:
                pipe.sadd(open_key(camera), change.incident_id)
            else:
                pipe.srem(open_key(camera), change.incident_id)
            fields = {"type": change.event, "id": change.incident_id, "camera": record["camera"]}
            if change.kind == "opened":
                fields["kind"] = record["kind"]
            pipe.xadd(EVENTS, fields, maxlen=EVENTS_MAXLEN, approximate=True)  # type: ignore[arg-type]
            if change.kind == "announcement":
                result = change.data["result"]
                entry = announced_entry(record, result)
                pipe.hset(speaker_announced_key(str(result["speaker"])), mapping=cast("Mapping[Any, Any]", entry))
            return True

        typed_txn = cast("Callable[[redis.client.Pipeline], None]", txn)  # redis' stubs type the callable as None
        try:
            return bool(self.r.transaction(typed_txn, key, value_from_callable=True))
        except fencing.StaleWrite:
            fencing.count_rejected(self.r, camera)
            raise

    def open_incidents(self, camera: str) -> list[Incident]:
        """The camera's open incidents (a node taking the camera over carries them on)."""
        ids = sorted(_text(raw) for raw in cast("set[bytes]", self.r.smembers(open_key(camera))))
        return [incident for record in self.records(ids) if (incident := Incident.from_record(record)).is_open]

    def camera_updated(self, camera: str) -> float | None:
        """When the camera's status was last published (its previous owner was alive then), or None."""
        raw = cast("bytes | None", self.r.hget(camera_key(camera), "updated_ts"))
        return None if raw is None else float(_text(raw))

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
        """Live camera status for dashboards and other machines; expires if the engine dies.

        Clustered, it carries the node's fencing token and is refused (logged, counted) after a takeover.
        """
        key = camera_key(camera)
        if self.fence_of is not None:
            token = self.fence_of(camera)
            if not fencing.fenced_status(self.r, camera, token, key, CAMERAS, status, ttl_s):
                log.warning("status of camera %s refused: token %d is stale (another node owns it)", camera, token)
            return
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

    def record_speaker_test(
        self, speaker: str, entry: Mapping[str, str | int | float], audit: Mapping[str, Any]
    ) -> None:
        """A test from the web page: the speaker's last test, and its line in the (capped) speaker audit trail."""
        pipe = self.r.pipeline()
        pipe.delete(speaker_tested_key(speaker))
        pipe.hset(speaker_tested_key(speaker), mapping=cast("Mapping[Any, Any]", entry))
        pipe.lpush(SPEAKER_AUDIT, json.dumps(dict(audit), ensure_ascii=False))
        pipe.ltrim(SPEAKER_AUDIT, 0, SPEAKER_AUDIT_MAX - 1)
        pipe.execute()

    def speaker_audit(self, limit: int = 100) -> Iterator[dict[str, Any]]:
        """The speaker tests, newest first."""
        for raw in self.r.lrange(SPEAKER_AUDIT, 0, limit - 1):
            yield dict(json.loads(raw))

    def speaker_records(self, speakers: Sequence[str]) -> dict[str, SpeakerRecords]:
        """Health, last announcement, last test and current holder of each speaker, in one round trip."""
        pipe = self.r.pipeline()
        for name in speakers:
            pipe.hgetall(speaker_key(name))
            pipe.hgetall(speaker_announced_key(name))
            pipe.hgetall(speaker_tested_key(name))
            pipe.get(speaker_lock_key(name))
        raw = pipe.execute()
        out = {}
        for i, name in enumerate(speakers):
            health, announced, tested = (_texts(h) for h in raw[4 * i : 4 * i + 3])
            out[name] = SpeakerRecords(health, announced, tested, lock_holder(raw[4 * i + 3]))
        return out


def _texts(mapping: Mapping[Any, Any]) -> dict[str, str]:
    """A Redis hash as text, whether or not the client decodes responses."""
    return {_text(k): _text(v) for k, v in mapping.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
