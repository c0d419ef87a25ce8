"""Reviewing many incidents quickly: episodes, a timeline across cameras, bulk review.

Episodes group an incident rule's quick repeats (``web.episode_gap_s``, see ``episodes``); bulk review applies
the single-incident action (same rules, same audit entry, same event) to each selected incident.
"""

from __future__ import annotations

import itertools
import time
from typing import Annotated, Literal

import redis
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field, StringConstraints

from monitor.config.web import WebConfig
from monitor.incident import Incident, iso
from monitor.store.incidents import IncidentStore
from monitor.web import views
from monitor.web.api import ERRORS, WRITE_ERRORS, Filters, Operator, Viewer, _config, _redis, act
from monitor.web.episodes import Episode, complete, group_episodes

router = APIRouter(prefix="/api", tags=["monitor"])

BULK_MAX = 500
HORIZON_S = 6 * 3600  # the longest an incident is assumed to last when deciding an episode has no earlier part
EXTRA_SCAN = 1000  # incidents read beyond a full page, at most, to complete its episodes
TIMELINE_MAX = 2000  # incidents on the timeline, newest kept
TIMELINE_LOOKBACK_S = 24 * 3600  # incidents opened this long before the window are drawn if they reach into it


def _gap_s(request: Request) -> float:
    """The episode gap of the newest valid config (saved edits apply without a restart)."""
    config = _config(request)
    web: WebConfig = config.config.web if config is not None else request.app.state.web_config
    return web.episode_gap_s


class EpisodeSummary(BaseModel):
    """Repeats of one rule on one camera, reviewed as one row."""

    id: str = Field(description="Its first incident's id.")
    camera: str
    kind: str
    rule: str
    zone: str | None
    status: str = Field(description="The most urgent status among its incidents (open, closed, then reviewed).")
    reviewed: bool = Field(description="True only when every incident in it is acknowledged or a false alarm.")
    opened_at: str | None = Field(description="When its first incident opened.")
    closed_at: str | None = Field(description="When its last incident closed; None while one is still going on.")
    span_s: float | None = Field(description="From first opening to last close; None while ongoing.")
    count: int
    peak_count: int
    announcements_ok: int
    announcements_failed: int
    incidents: list[views.IncidentSummary] = Field(description="Its incidents, newest first.")


class EpisodePage(BaseModel):
    """One page of episodes; ``next_offset`` (in episodes) is None on the last page."""

    items: list[EpisodeSummary]
    offset: int
    next_offset: int | None
    gap_s: float = Field(description="Incidents reopening within this many seconds form one episode.")


def episode_summary(episode: Episode) -> EpisodeSummary:
    """The list row of an episode."""
    rows = [views.summary(i) for i in reversed(episode.incidents)]
    first, closed = episode.first, episode.closed_ts
    return EpisodeSummary(
        id=episode.id,
        camera=first.camera,
        kind=first.kind,
        rule=rows[-1].rule,
        zone=first.zone,
        status=episode.status,
        reviewed=episode.reviewed,
        opened_at=first.opened_at,
        closed_at=iso(closed),
        span_s=None if closed is None else round(closed - episode.opened_ts, 1),
        count=len(rows),
        peak_count=episode.peak_count,
        announcements_ok=sum(r.announcements_ok for r in rows),
        announcements_failed=sum(r.announcements_failed for r in rows),
        incidents=rows,
    )


def find_episodes(
    client: redis.Redis, where: views.IncidentFilter, gap_s: float, offset: int, limit: int
) -> EpisodePage:
    """Episodes of the matching incidents, newest first, one page: reads the index until the page's episodes
    can gain no older incident (or ``EXTRA_SCAN`` more incidents did not settle it)."""
    source = views.matching(client, where)
    read: list[Incident] = []
    full_at: int | None = None  # incidents read when there first were more episodes than the page needs
    while True:
        chunk = list(itertools.islice(source, views.SCAN_CHUNK))
        read += chunk
        episodes = group_episodes(read, gap_s)
        if full_at is None and len(episodes) > offset + limit:
            full_at = len(read)
        if not chunk or (full_at is not None and len(read) - full_at >= EXTRA_SCAN):
            break
        if full_at is not None and complete(episodes[: offset + limit], episodes, read[-1].opened_ts, gap_s, HORIZON_S):
            break
    items = [episode_summary(e) for e in episodes[offset : offset + limit]]
    more = len(episodes) > offset + limit
    return EpisodePage(items=items, offset=offset, next_offset=offset + limit if more else None, gap_s=gap_s)


@router.get("/episodes", responses=ERRORS)
def list_episodes(
    request: Request,
    _: Viewer,
    where: Filters,
    offset: Annotated[int, Query(ge=0, le=100_000, description="In episodes.")] = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Episodes per page.")] = 25,
) -> EpisodePage:
    """The incident list's incidents (same filters) grouped into episodes, newest first."""
    return find_episodes(_redis(request), where, _gap_s(request), offset, limit)


class TimelineEpisode(BaseModel):
    """A group of marks on a camera's bar that are one episode (two incidents or more)."""

    id: str
    incident_ids: list[str]
    opened_at: str | None
    closed_at: str | None
    status: str


class TimelineCamera(BaseModel):
    """One camera's bar: its incidents in the window, oldest first, and their episodes."""

    name: str
    incidents: list[views.IncidentSummary]
    episodes: list[TimelineEpisode]


class Timeline(BaseModel):
    """Every camera's incidents over the last hours."""

    start: str
    end: str
    hours: int
    gap_s: float
    cameras: list[TimelineCamera]
    truncated: bool = Field(description=f"More than {TIMELINE_MAX} incidents: only the newest are drawn.")


def _timeline_episode(episode: Episode) -> TimelineEpisode:
    return TimelineEpisode(
        id=episode.id,
        incident_ids=[i.id for i in episode.incidents],
        opened_at=episode.first.opened_at,
        closed_at=iso(episode.closed_ts),
        status=episode.status,
    )


def timeline(client: redis.Redis, camera_names: list[str], hours: int, gap_s: float, now: float) -> Timeline:
    """Incidents that overlap the last ``hours`` (up to ``now``), per camera, with their episodes."""
    start = now - hours * 3600
    recent = views.matching(client, views.IncidentFilter(since=start - TIMELINE_LOOKBACK_S, until=now))
    found = list(itertools.islice(recent, TIMELINE_MAX + 1))
    shown = [i for i in found[:TIMELINE_MAX] if i.closed_ts is None or i.closed_ts >= start]
    per_camera: dict[str, list[Incident]] = {name: [] for name in camera_names}
    for incident in sorted(shown, key=lambda i: i.opened_ts):
        per_camera.setdefault(incident.camera, []).append(incident)
    cameras = [
        TimelineCamera(
            name=name,
            incidents=[views.summary(i) for i in per_camera[name]],
            episodes=[_timeline_episode(e) for e in group_episodes(per_camera[name], gap_s) if len(e.incidents) > 1],
        )
        for name in sorted(per_camera)
    ]
    return Timeline(
        start=iso(start) or "", end=iso(now) or "", hours=hours, gap_s=gap_s, cameras=cameras,
        truncated=len(found) > TIMELINE_MAX,
    )  # fmt: skip


@router.get("/timeline", responses=ERRORS)
def get_timeline(
    request: Request, _: Viewer, hours: Annotated[int, Query(ge=1, le=168, description="Window length.")] = 6
) -> Timeline:
    """A bar per camera (configured or known) with its incidents over the last ``hours``, grouped into episodes."""
    client = _redis(request)
    return timeline(client, views.camera_names(client, _config(request)), hours, _gap_s(request), time.time())


IncidentIdText = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class BulkAction(BaseModel):
    """One staff action for many incidents (each gets its own audit entry)."""

    ids: list[IncidentIdText] = Field(min_length=1, max_length=BULK_MAX, description="Incident ids.")
    action: Literal["acknowledge", "false_alarm"] = Field(
        description="acknowledge: seen and handled (已审阅 reviewed); false_alarm: not a real incident."
    )
    note: str | None = Field(None, max_length=2000, description="Optional remark, kept with every audit entry.")


class BulkResult(BaseModel):
    """What became of one id: ``code`` is what the single-incident action would have answered."""

    id: str
    ok: bool
    code: int = Field(description="200 done, 404 no such incident, 409 already in that state.")
    status: str | None = Field(description="The incident's status afterwards; None for an unknown id.")
    error: str | None


class BulkAnswer(BaseModel):
    """Per-id results, in the order sent (duplicates once)."""

    done: int
    failed: int
    results: list[BulkResult]


@router.post("/incidents/bulk", responses=WRITE_ERRORS)
def bulk_action(request: Request, body: BulkAction, user: Operator) -> BulkAnswer:
    """Operator: acknowledge (mark reviewed) or mark as false alarms many incidents at once; each is done exactly
    as its own page's button does it (open ones too), and one id's failure does not stop the others."""
    client = _redis(request)
    ids = list(dict.fromkeys(body.ids))
    note = body.note if body.note and body.note.strip() else None
    errors: dict[str, HTTPException] = {}
    for incident_id in ids:
        try:
            act(client, incident_id, user, body.action, note)
        except HTTPException as exc:
            errors[incident_id] = exc
    statuses = {str(r["id"]): str(r.get("status", "open")) for r in IncidentStore(client).records(ids)}
    results = [
        BulkResult(
            id=i, ok=i not in errors, code=errors[i].status_code if i in errors else 200, status=statuses.get(i),
            error=str(errors[i].detail) if i in errors else None,
        )
        for i in ids
    ]  # fmt: skip
    return BulkAnswer(done=len(ids) - len(errors), failed=len(errors), results=results)
