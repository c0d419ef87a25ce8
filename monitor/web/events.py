"""Server-sent events: incident changes from the Redis stream, camera changes from the status hashes.

Blocking Redis reads run in worker threads under their own limiter, so many open dashboards
cannot starve the threads that serve ordinary API requests.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.to_thread
import redis
from starlette.requests import Request

from monitor.config import LoadedConfig
from monitor.store.incidents import EVENTS, IncidentStore
from monitor.web import views

BLOCK_MS = 1000
CAMERA_EVERY_S = 2.0
KEEPALIVE_S = 15.0
MAX_STREAM_S = 600.0  # the browser reconnects by itself (with Last-Event-ID): old connections do not pile up
_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
_limiter: anyio.CapacityLimiter | None = None


def _threads() -> anyio.CapacityLimiter:
    global _limiter
    if _limiter is None:
        _limiter = anyio.CapacityLimiter(64)
    return _limiter


def _sse(event: str, data: Any, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _latest_id(client: redis.Redis) -> str:
    last = client.xrevrange(EVENTS, count=1)
    return views.text(last[0][0]) if last else "0-0"


def _camera_key(cam: views.CameraStatus) -> tuple[Any, ...]:
    return (cam.reporting, cam.online, cam.people, cam.zones, cam.detect_fps, cam.open_incidents, cam.snapshot_url)


async def event_stream(
    request: Request, client: redis.Redis, config: LoadedConfig | None, last_event_id: str | None
) -> AsyncIterator[str]:
    """Yield SSE messages until the client goes away or the stream reaches its maximum age."""
    limiter = _threads()

    def run(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return anyio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=limiter)

    last = last_event_id if last_event_id and _STREAM_ID.match(last_event_id) else await run(_latest_id, client)
    store = IncidentStore(client)
    cameras: dict[str, tuple[Any, ...]] = {}
    started = time.monotonic()
    next_camera = 0.0
    last_sent = started
    yield "retry: 3000\n\n"
    stopping = request.app.state.stopping
    while time.monotonic() - started < MAX_STREAM_S and not stopping.is_set() and not await request.is_disconnected():
        entries = await run(client.xread, {EVENTS: last}, count=100, block=BLOCK_MS)
        for _stream, messages in entries or []:
            for raw_id, raw_fields in messages:
                last = views.text(raw_id)
                fields = {views.text(k): views.text(v) for k, v in raw_fields.items()}
                incident = await run(store.incident, fields.get("id", "")) if fields.get("id") else None
                data = {**fields, "incident": views.summary(incident).model_dump() if incident else None}
                last_sent = time.monotonic()
                yield _sse("incident", data, last)
        if time.monotonic() >= next_camera:
            next_camera = time.monotonic() + CAMERA_EVERY_S
            for cam in await run(views.camera_statuses, client, config):
                key = _camera_key(cam)
                if cameras.get(cam.name) != key:
                    cameras[cam.name] = key
                    last_sent = time.monotonic()
                    yield _sse("camera", cam.model_dump())
        if time.monotonic() - last_sent > KEEPALIVE_S:
            last_sent = time.monotonic()
            yield ": keepalive\n\n"
