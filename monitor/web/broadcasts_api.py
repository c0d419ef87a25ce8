"""Scheduled broadcasts on the page: what is configured, when each plays next, and the recent plays.

Only names leave the server: an audio broadcast shows its file name, never its path; speaker errors go through
``views.shown`` (no credentials, no server paths).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from monitor.config import LoadedConfig
from monitor.config.broadcasts import BroadcastConfig
from monitor.config.watch import ConfigWatcher
from monitor.incident import iso
from monitor.rules.broadcast import next_slot
from monitor.store.broadcasts import BroadcastRecords
from monitor.web import views
from monitor.web.auth import User, viewer

router = APIRouter(prefix="/api", tags=["monitor"])


class BroadcastPlay(BaseModel):
    """One play of a broadcast (one repeat) with every speaker's result."""

    broadcast: str
    slot_at: str | None = Field(description="The scheduled time this play belongs to.")
    queued_at: str | None
    repeat: int
    repeats: int
    ok: bool = Field(description="Every speaker played it.")
    results: list[views.Announcement]


class BroadcastInfo(BaseModel):
    """A configured broadcast."""

    name: str
    enabled: bool
    speakers: list[str]
    audio: str | None = Field(description="File name of the announcement (no path).")
    text: str | None = Field(description="Text spoken by espeak-ng.")
    voice: str | None
    at: list[str]
    days: list[str]
    dates: list[str]
    timezone: str
    repeat: int
    gap_s: float
    priority: int
    next_at: str | None = Field(description="When it plays next (null: disabled, or no date ahead).")
    last: BroadcastPlay | None


class BroadcastsView(BaseModel):
    """The schedule and the play log, newest play first."""

    broadcasts: list[BroadcastInfo]
    plays: list[BroadcastPlay]


def play_view(record: dict[str, Any]) -> BroadcastPlay:
    """A stored play record as the page shows it."""
    return BroadcastPlay(
        broadcast=str(record.get("broadcast", "")),
        slot_at=iso(record.get("slot_ts")),
        queued_at=iso(record.get("queued_ts")),
        repeat=int(record.get("repeat", 1)),
        repeats=int(record.get("repeats", 1)),
        ok=bool(record.get("ok")),
        results=[
            views.Announcement(
                speaker=str(r.get("speaker", "")),
                started_at=r.get("started_at"),
                ended_at=r.get("ended_at"),
                ok=bool(r.get("ok")),
                error=views.shown(str(r["error"])) if r.get("error") else None,
            )
            for r in record.get("results", [])
        ],
    )


def _info(name: str, b: BroadcastConfig, base_dir: Path, now: float, last: dict[str, Any] | None) -> BroadcastInfo:
    runtime = b.build(name, base_dir)
    return BroadcastInfo(
        name=name,
        enabled=b.enabled,
        speakers=list(b.speakers),
        audio=runtime.audio.name if runtime.audio is not None else None,
        text=b.text,
        voice=b.voice if b.text is not None else None,
        at=list(b.at),
        days=list(b.days),
        dates=[d.isoformat() for d in b.dates],
        timezone=b.timezone,
        repeat=b.repeat,
        gap_s=b.gap_s,
        priority=b.priority,
        next_at=iso(next_slot(runtime.times, now)) if b.enabled else None,
        last=play_view(last) if last is not None else None,
    )


def broadcasts_view(client: redis.Redis, loaded: LoadedConfig | None, now: float, limit: int) -> BroadcastsView:
    """The configured broadcasts (with their next slot and last play) and the newest ``limit`` plays."""
    records = BroadcastRecords(client)
    last = records.last()
    infos: list[BroadcastInfo] = []
    if loaded is not None:
        infos = [_info(name, b, loaded.base_dir, now, last.get(name)) for name, b in loaded.config.broadcasts.items()]
    return BroadcastsView(broadcasts=infos, plays=[play_view(r) for r in records.recent(limit)])


@router.get("/broadcasts")
def list_broadcasts(
    request: Request,
    _: Annotated[User, Depends(viewer)],
    limit: Annotated[int, Query(ge=1, le=500, description="How many recent plays.")] = 100,
) -> BroadcastsView:
    """Scheduled broadcasts with their next play, and the recent plays with each speaker's result."""
    watcher: ConfigWatcher | None = request.app.state.config
    loaded = None
    if watcher is not None:
        watcher.poll()  # the schedule the engine now runs, after a saved edit
        loaded = watcher.current
    return broadcasts_view(request.app.state.redis, loaded, time.time(), limit)
