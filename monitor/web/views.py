"""What the web side shows, read from Redis and shaped for the page: no paths, no credentials.

Records keep absolute media paths and may carry URLs with passwords in error texts; nothing here
returns either: texts go through ``scrub`` (credentials) and ``strip_paths`` (server paths become ``…/name``).
Media is referenced by incident id (``/api/incidents/<id>/clip``) or camera name only.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

import redis
from pydantic import BaseModel, Field

from monitor.config import LoadedConfig
from monitor.incident import Incident, iso
from monitor.redact import redact_url, scrub, scrub_any
from monitor.store.incidents import CAMERAS, INDEX, IncidentStore, camera_key
from monitor.web.speaker_state import camera_warnings

STATUSES = ("open", "closed", "acknowledged", "false_alarm")
RECENT_FOR_OPEN = 500  # open incidents are looked for among this many newest ones
SCAN_CHUNK = 200


# An absolute path: after a quote, or a '/' that does not continue a word, URL or relative path ("a/b", "x://h/p"),
# or a file:// URL; two or more segments (a lone "/x" is too often plain text).
_SEGMENT = r"[^\s/'\"<>:,;()\[\]{}]+"
_ABS_PATH = re.compile(rf"(?:\bfile://|(?<![\w/.:~\\-]))(/(?:{_SEGMENT}/)+(?:{_SEGMENT})?)")
_QUOTED_PATH = re.compile(r"(?<=['\"])/[^'\"\n]*/([^'\"\n/]*)(?=['\"])")


def strip_paths(value: str) -> str:
    """Text with every absolute server path (and file:// URL) cut down to ``…/`` plus its last part."""
    value = _QUOTED_PATH.sub(lambda m: f"…/{m.group(1)}", value)
    return _ABS_PATH.sub(lambda m: "…/" + m.group(1).rstrip("/").rsplit("/", 1)[-1], value)


def strip_paths_any(value: Any) -> Any:
    """``strip_paths`` on every string inside nested dicts and lists."""
    if isinstance(value, str):
        return strip_paths(value)
    if isinstance(value, dict):
        return {k: strip_paths_any(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strip_paths_any(v) for v in value]
    return value


def shown(value: str) -> str:
    """A record's text as viewers may see it: no credentials, no server paths."""
    return strip_paths(scrub(value))


def text(value: Any) -> str:
    """Redis value as text whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else str(value)


class Zone(BaseModel):
    """A configured zone, to draw over the camera image."""

    name: str
    points: list[tuple[float, float]] = Field(description="Polygon corners.")
    relative: bool = Field(description="True: fractions of the image size; False: pixels.")


class CameraStatus(BaseModel):
    """Live state of one camera as the engine last published it."""

    name: str
    reporting: bool = Field(description="False when no engine has published this camera's status recently.")
    online: bool
    people: int
    zones: dict[str, int] = Field(description="People per zone.")
    input_fps: float
    detect_fps: float
    detect_fps_configured: float | None = Field(
        default=None, description="The camera's configured detect_fps, to compare with the real rate."
    )
    dropped: int
    reconnects: int
    last_frame_at: str | None
    last_error: str
    width: int
    height: int
    decoder: str = Field(default="", description="Codec and where it decodes, e.g. 'h264 on cuda' or 'h264 on cpu'.")
    url: str = Field(description="Source URL with credentials removed.")
    updated_at: str | None
    snapshot_url: str | None = Field(description="Latest annotated live image, when there is one.")
    open_incidents: int
    speaker_warning: str | None = Field(
        default=None, description="Names this camera's speakers whose last announcement or health check failed."
    )
    node: str | None = Field(
        default=None, description="The node running the camera (several machines, `cluster:`); null on one machine."
    )


class CalibrationInfo(BaseModel):
    """The detector setting a camera's calibration chose from the people in its first minutes, and why."""

    state: str = Field(description="calibrated | no_people (default kept, tried again later).")
    setting: str | None = Field(description="E.g. 'imgsz 1280, conf 0.25'; null when the default was kept.")
    people: int = Field(description="Whole people measured by the reference pass.")
    frames: int
    heights_px: dict[str, float] = Field(description="min/p5/p50/p95/max of their heights, frame pixels.")
    smallest_px: float | None = Field(description="The 5th-percentile height the choice rests on.")
    scaled_px: float | None = Field(description="That height at the model's input with the chosen setting.")
    min_height_px: float = Field(description="The model's minimum height at its input.")
    reference: str = Field(description="The setting heights were measured with.")
    at: str | None
    reason: str


def calibration_info(raw: str | None) -> CalibrationInfo | None:
    """The published calibration record for the page (None when there is none or it is malformed)."""
    if not raw:
        return None
    from detectors.calibration import Calibration

    try:
        record = Calibration.from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError):
        return None
    ev = record.evidence
    return CalibrationInfo(
        state=record.state,
        setting=record.choice.label if record.choice is not None else None,
        people=ev.people,
        frames=ev.frames,
        heights_px=ev.heights_px,
        smallest_px=ev.basis_px,
        scaled_px=ev.scaled_px,
        min_height_px=ev.min_height_px,
        reference=record.reference,
        at=iso(record.at) if record.at else None,
        reason=ev.reason,
    )


class CameraDetail(CameraStatus):
    """A camera with its configured zones."""

    zone_shapes: list[Zone]
    calibration: CalibrationInfo | None = Field(
        default=None, description="The detector setting its calibration chose (null: not calibrated or hand-set)."
    )


class Announcement(BaseModel):
    """One playback attempt on a speaker."""

    speaker: str
    started_at: str | None
    ended_at: str | None
    ok: bool
    error: str | None


class AuditEntry(BaseModel):
    """Who did what to an incident, and when."""

    user: str
    action: str
    at: str
    note: str | None


class TimelineEntry(BaseModel):
    """One moment in an incident's life, in time order."""

    at: str
    what: str
    ok: bool | None = None


class IncidentSummary(BaseModel):
    """An incident as a row of the list."""

    id: str
    kind: str
    rule: str
    camera: str
    zone: str | None
    status: str
    opened_at: str | None
    closed_at: str | None
    duration_s: float | None = Field(description="Closed incidents: seconds open; open ones: None.")
    peak_count: int
    has_clip: bool
    has_snapshot: bool
    media_expired: bool
    clip_url: str | None
    snapshot_url: str | None
    announcements_ok: int
    announcements_failed: int


class IncidentDetail(IncidentSummary):
    """An incident with everything the review page shows."""

    announcements: list[Announcement]
    audit: list[AuditEntry]
    timeline: list[TimelineEntry]
    details: dict[str, Any]


class IncidentPage(BaseModel):
    """One page of the incident list; ``next_offset`` is None on the last page."""

    items: list[IncidentSummary]
    offset: int
    next_offset: int | None


def _num(data: dict[str, str], key: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(float(data.get(key) or 0))
    except ValueError:
        return kind(0)


def camera_names(client: redis.Redis, config: LoadedConfig | None) -> list[str]:
    """Cameras known to the engine or the config, sorted."""
    names = {text(n) for n in client.smembers(CAMERAS)}
    if config is not None:
        names.update(config.config.cameras)
    return sorted(names)


def open_counts(client: redis.Redis) -> dict[str, int]:
    """Open (not yet closed, not dismissed) incidents per camera among the recent ones."""
    counts: dict[str, int] = {}
    for incident in incidents(client, [text(i) for i in client.zrevrange(INDEX, 0, RECENT_FOR_OPEN - 1)]):
        if incident.status == "open":
            counts[incident.camera] = counts.get(incident.camera, 0) + 1
    return counts


def camera_statuses(
    client: redis.Redis, config: LoadedConfig | None, names: list[str] | None = None
) -> list[CameraStatus]:
    """Live state of the given (default: all) cameras in one round trip."""
    names = camera_names(client, config) if names is None else names
    pipe = client.pipeline()
    for name in names:
        pipe.hgetall(camera_key(name))
    hashes = pipe.execute()
    opened = open_counts(client)
    warnings = camera_warnings(client, config)
    out = []
    for name, raw in zip(names, hashes, strict=True):
        data = {text(k): text(v) for k, v in raw.items()}
        conf = config.config.cameras.get(name) if config else None
        conf_url = conf.detect_url if conf else ""
        try:
            zones = {str(k): int(v) for k, v in json.loads(data.get("zones") or "{}").items()}
        except (ValueError, TypeError, AttributeError):
            zones = {}
        last_ts = _num(data, "last_frame_ts", float)
        updated = _num(data, "updated_ts", float)
        out.append(
            CameraStatus(
                name=name,
                reporting=bool(data),
                online=bool(data) and data.get("online") == "1",
                people=_num(data, "people", int),
                zones=zones,
                input_fps=_num(data, "input_fps", float),
                detect_fps=_num(data, "detect_fps", float),
                detect_fps_configured=conf.detect_fps if conf else None,
                dropped=_num(data, "dropped", int),
                reconnects=_num(data, "reconnects", int),
                last_frame_at=iso(last_ts) if last_ts else None,
                last_error=shown(data.get("last_error", "")),
                width=_num(data, "width", int),
                height=_num(data, "height", int),
                decoder=shown(data.get("decoder", "")),
                url=strip_paths(redact_url(data.get("url") or conf_url)),
                updated_at=iso(updated) if updated else None,
                snapshot_url=f"/api/cameras/{quote(name, safe='')}/snapshot?t={updated:.0f}"
                if data.get("snapshot")
                else None,
                open_incidents=opened.get(name, 0),
                speaker_warning=warnings.get(name),
                node=data.get("node") or None,
            )
        )
    return out


def camera_detail(client: redis.Redis, config: LoadedConfig | None, name: str) -> CameraDetail | None:
    """One camera's state and zones, or None for an unknown camera."""
    if name not in camera_names(client, config):
        return None
    status = camera_statuses(client, config, [name])[0]
    cam = config.config.cameras.get(name) if config else None
    shapes = [Zone(name=z, points=list(c.points), relative=c.relative) for z, c in (cam.zones if cam else {}).items()]
    calibration = calibration_info(text(client.hget(camera_key(name), "calibration") or ""))
    return CameraDetail(**status.model_dump(), zone_shapes=shapes, calibration=calibration)


def incidents(client: redis.Redis, ids: list[str]) -> Iterator[Incident]:
    """Incidents for ids, fetched in chunks (missing ones skipped)."""
    for record in IncidentStore(client).records(ids, SCAN_CHUNK):
        yield Incident.from_record(record)


def _media_url(incident: Incident, kind: Literal["clip", "snapshot"]) -> str | None:
    present = incident.clip if kind == "clip" else incident.snapshot
    return f"/api/incidents/{incident.id}/{kind}" if present and not incident.extra.get("media_expired") else None


def summary(incident: Incident) -> IncidentSummary:
    """The list row of an incident."""
    anns = incident.announcements
    opened, closed = incident.opened_ts, incident.closed_ts
    clip, snap = _media_url(incident, "clip"), _media_url(incident, "snapshot")
    return IncidentSummary(
        id=incident.id,
        kind=incident.kind,
        rule=scrub(incident.rule),
        camera=incident.camera,
        zone=incident.zone,
        status=incident.status,
        opened_at=incident.opened_at,
        closed_at=incident.closed_at,
        duration_s=round(closed - opened, 1) if closed is not None else None,
        peak_count=incident.peak_count,
        has_clip=clip is not None,
        has_snapshot=snap is not None,
        media_expired=bool(incident.extra.get("media_expired")),
        clip_url=clip,
        snapshot_url=snap,
        announcements_ok=sum(1 for a in anns if a.ok),
        announcements_failed=sum(1 for a in anns if not a.ok),
    )


def detail(incident: Incident) -> IncidentDetail:
    """The review page's view of an incident, with a merged timeline (engine events, playbacks, staff actions)."""
    anns = [
        Announcement(
            speaker=a.speaker, started_at=a.started_at, ended_at=a.ended_at, ok=a.ok,
            error=shown(a.error) if a.error else None,
        )
        for a in incident.announcements
    ]  # fmt: skip
    audit = [
        AuditEntry(user=a["user"], action=a["action"], at=a["at"], note=a.get("note"))
        for a in incident.extra.get("audit") or []
    ]
    at_open = incident.peak_count if incident.opened_count is None else incident.opened_count  # older records
    timeline = [TimelineEntry(at=incident.opened_at or "", what=f"opened ({at_open} people)")]
    timeline += [
        TimelineEntry(
            at=a.started_at, what=f"announcement on {a.speaker}" + (f": {a.error}" if a.error else ""), ok=a.ok
        )
        for a in anns
        if a.started_at
    ]
    timeline += [  # announcement decisions (also why nothing played), escalation, resumption after a restart
        TimelineEntry(at=str(t.get("at") or ""), what=_timeline_text(t))
        for t in incident.timeline
    ]  # fmt: skip
    if incident.closed_at:
        timeline.append(TimelineEntry(at=incident.closed_at, what=f"closed (peak {incident.peak_count})"))
    timeline += [
        TimelineEntry(at=a.at, what=f"{a.action} by {a.user}" + (f": {a.note}" if a.note else "")) for a in audit
    ]
    timeline.sort(key=lambda t: _sort_key(t.at))
    return IncidentDetail(
        **summary(incident).model_dump(),
        announcements=anns,
        audit=audit,
        timeline=timeline,
        details=strip_paths_any(scrub_any(dict(incident.details))),
    )


def _timeline_text(entry: Mapping[str, Any]) -> str:
    """An engine timeline entry as one line: what happened and why."""
    return shown(" — ".join(str(entry[k]) for k in ("event", "reason") if k in entry))


def _sort_key(at: str) -> float:
    try:
        return datetime.fromisoformat(at).timestamp()
    except ValueError:
        return 0.0


def matches_status(incident: Incident, status: str) -> bool:
    """``closed`` means the situation ended, whatever staff made of it (acknowledged and false alarms included);
    ``open`` means ongoing and not yet reviewed; ``acknowledged`` and ``false_alarm`` are review states."""
    if status == "closed":
        return not incident.is_open
    return incident.status == status


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    """What the incident list (and its episodes) is narrowed to; None: any."""

    camera: str | None = None
    kind: str | None = None
    status: str | None = None
    since: float | None = None
    until: float | None = None


def matching(client: redis.Redis, where: IncidentFilter) -> Iterator[Incident]:
    """Incidents that match, newest first (scans the index in chunks, as far as the caller reads)."""
    start = 0
    hi = "+inf" if where.until is None else where.until
    lo = "-inf" if where.since is None else where.since
    while True:
        ids = [text(i) for i in client.zrevrangebyscore(INDEX, hi, lo, start=start, num=SCAN_CHUNK)]
        if not ids:
            return
        start += len(ids)
        for incident in incidents(client, ids):
            if (where.camera and incident.camera != where.camera) or (where.kind and incident.kind != where.kind):
                continue
            if where.status and not matches_status(incident, where.status):
                continue
            yield incident


def find_incidents(client: redis.Redis, where: IncidentFilter, *, offset: int, limit: int) -> IncidentPage:
    """Newest first within the time range, filtered, one page."""
    found = [summary(i) for i in itertools.islice(matching(client, where), offset, offset + limit + 1)]
    more = len(found) > limit
    return IncidentPage(items=found[:limit], offset=offset, next_offset=offset + limit if more else None)


def now_iso() -> str:
    """The current time in the records' format."""
    return iso(time.time()) or ""
