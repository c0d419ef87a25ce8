"""The incident: one frozen model that defines every field and key the store, CLI, web and notifications use.

A record in Redis is ``Incident.to_record()`` as JSON; ``Incident.from_record`` reads it back (also records
written before the schema was versioned). ``monitor incidents --json`` prints ``to_record()``, so the keys
here are the command's contract: ``id kind camera zone status opened_at closed_at peak_count clip snapshot
announcements`` (plus the rest).

Changes reach the store as ``IncidentChange`` values: small, ordered, numbered patches. The number (``seq``,
per incident, from 1) makes delivery idempotent: the store applies a change only if its ``seq`` is higher than
the record's, so a replay after a crash or an outage never duplicates an announcement or a timeline entry.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from monitor.types import PlaybackResult

SCHEMA_VERSION = 2

IncidentKind = Literal["gathering", "checkpoint_unstaffed", "camera_offline"]
IncidentStatus = Literal["open", "closed", "acknowledged", "false_alarm"]
ChangeKind = Literal["opened", "peak", "media", "announcement", "timeline", "escalated", "closed"]
REVIEWED: frozenset[str] = frozenset({"acknowledged", "false_alarm"})


def iso(ts: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 with the local UTC offset."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


def new_incident_id(ts: float) -> str:
    """Time-sortable, unique without coordination: milliseconds plus random bits (made before any store call)."""
    return f"{int(ts * 1000):013d}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class AnnouncementResult:
    """One playback attempt on one speaker, as recorded on the incident."""

    speaker: str
    started_at: str | None
    ended_at: str | None
    ok: bool
    error: str | None = None

    def to_record(self) -> dict[str, Any]:
        """JSON form (the ``announcements`` contract)."""
        return dataclasses.asdict(self)

    @classmethod
    def of(cls, result: PlaybackResult) -> AnnouncementResult:
        """The record of a speaker's playback result."""
        return cls(result.speaker, iso(result.started_at), iso(result.ended_at), result.ok, result.error)


@dataclass(frozen=True, slots=True)
class Incident:
    """An incident as the store holds it. Staff-owned fields (status once reviewed, notes) are kept by merges."""

    id: str
    kind: str
    rule: str
    camera: str
    zone: str | None
    opened_ts: float
    peak_count: int = 0
    opened_count: int | None = None  # people (or staff) when it opened; the peak may grow later
    status: str = "open"
    closed_ts: float | None = None
    clip: str | None = None
    snapshot: str | None = None
    announcements: tuple[AnnouncementResult, ...] = ()
    timeline: tuple[Mapping[str, Any], ...] = ()
    needs_attention: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)
    seq: int = 0  # the last change applied (see IncidentChange)
    extra: Mapping[str, Any] = field(default_factory=dict)  # fields other writers own (notes, audit, media_expired)

    @property
    def opened_at(self) -> str | None:
        """ISO 8601 open time."""
        return iso(self.opened_ts)

    @property
    def closed_at(self) -> str | None:
        """ISO 8601 close time, None while open."""
        return iso(self.closed_ts)

    @property
    def is_open(self) -> bool:
        """Whether the situation is still going on (a reviewed incident can still be open)."""
        return self.closed_ts is None

    def to_record(self) -> dict[str, Any]:
        """The JSON record (keys of ``monitor incidents --json``)."""
        record: dict[str, Any] = dict(self.extra)
        record.update(
            schema=SCHEMA_VERSION,
            id=self.id,
            kind=self.kind,
            rule=self.rule,
            camera=self.camera,
            zone=self.zone,
            status=self.status,
            opened_at=self.opened_at,
            closed_at=self.closed_at,
            opened_ts=self.opened_ts,
            closed_ts=self.closed_ts,
            peak_count=self.peak_count,
            opened_count=self.opened_count,
            clip=self.clip,
            snapshot=self.snapshot,
            announcements=[a.to_record() for a in self.announcements],
            timeline=[dict(t) for t in self.timeline],
            needs_attention=self.needs_attention,
            details=dict(self.details),
            seq=self.seq,
        )
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Incident:
        """Read a stored record (missing fields of older records take their defaults)."""
        own = {f.name for f in dataclasses.fields(cls)} | {"schema", "opened_at", "closed_at"}
        return cls(
            id=str(record["id"]),
            kind=str(record["kind"]),
            rule=str(record.get("rule", "")),
            camera=str(record["camera"]),
            zone=record.get("zone"),
            opened_ts=float(record["opened_ts"]),
            peak_count=int(record.get("peak_count", 0)),
            opened_count=None if record.get("opened_count") is None else int(record["opened_count"]),
            status=str(record.get("status", "open")),
            closed_ts=None if record.get("closed_ts") is None else float(record["closed_ts"]),
            clip=record.get("clip"),
            snapshot=record.get("snapshot"),
            announcements=tuple(AnnouncementResult(**a) for a in record.get("announcements", [])),
            timeline=tuple(record.get("timeline", [])),
            needs_attention=bool(record.get("needs_attention", False)),
            details=dict(record.get("details") or {}),
            seq=int(record.get("seq", 0)),
            extra={k: v for k, v in record.items() if k not in own},
        )

    def opening(self) -> tuple[Incident, IncidentChange]:
        """The first change of a new incident (``seq`` 1, the whole record) and the incident after it."""
        incident = dataclasses.replace(self, seq=1)
        return incident, IncidentChange(self.id, 1, "opened", {"record": incident.to_record()})

    def change(self, kind: ChangeKind, **data: Any) -> tuple[Incident, IncidentChange]:
        """The next numbered change of this incident and the incident after it."""
        change = IncidentChange(self.id, self.seq + 1, kind, data)
        return self.apply(change), change

    def apply(self, change: IncidentChange) -> Incident:
        """This incident after ``change`` (pure; the store and the engine's local copy use the same code)."""
        data = change.data
        seq = max(self.seq, change.seq)
        if change.kind == "peak":
            return dataclasses.replace(self, peak_count=max(self.peak_count, int(data["peak"])), seq=seq)
        if change.kind == "media":
            details = {**self.details, **data.get("details", {})}
            paths = {k: data[k] for k in ("clip", "snapshot") if k in data}
            return dataclasses.replace(self, details=details, seq=seq, **paths)
        if change.kind == "announcement":
            result = AnnouncementResult(**data["result"])
            return dataclasses.replace(self, announcements=(*self.announcements, result), seq=seq)
        if change.kind == "timeline":
            return dataclasses.replace(self, timeline=(*self.timeline, dict(data["entry"])), seq=seq)
        if change.kind == "escalated":
            entry = {"at": data["at"], "event": "escalated", "reason": data["reason"]}
            return dataclasses.replace(self, needs_attention=True, timeline=(*self.timeline, entry), seq=seq)
        if change.kind == "closed":
            details = {**self.details, **data.get("details", {}), "closed_by": data["closed_by"]}
            status = self.status if self.status in REVIEWED else "closed"
            return dataclasses.replace(
                self,
                closed_ts=float(data["ts"]),
                peak_count=max(self.peak_count, int(data.get("peak", 0))),
                status=status,
                details=details,
                seq=seq,
            )
        raise ValueError(f"incident {self.id}: cannot apply a {change.kind!r} change to an existing record")


@dataclass(frozen=True, slots=True)
class IncidentChange:
    """One numbered change of one incident, as queued in the outbox and delivered to the store.

    ``opened`` carries the whole new record in ``data["record"]``; the others carry a small patch.
    ``event`` is the name announced on the store's event stream (the web page listens to it).
    """

    incident_id: str
    seq: int
    kind: ChangeKind
    data: Mapping[str, Any]

    @property
    def key(self) -> str:
        """Idempotency key: one incident's change number."""
        return f"{self.incident_id}#{self.seq}"

    @property
    def event(self) -> str:
        """Event stream type for this change."""
        return {
            "opened": "incident_opened",
            "closed": "incident_closed",
            "media": "incident_media",
            "announcement": "announcement",
            "escalated": "incident_escalated",
            "peak": "incident_updated",
            "timeline": "incident_updated",
        }[self.kind]

    def to_json(self) -> dict[str, Any]:
        """Plain data for the outbox."""
        return {"incident_id": self.incident_id, "seq": self.seq, "kind": self.kind, "data": dict(self.data)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IncidentChange:
        """Read back what ``to_json`` wrote."""
        return cls(str(data["incident_id"]), int(data["seq"]), data["kind"], dict(data["data"]))
