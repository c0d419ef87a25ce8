"""Live video for the camera page: the camera's H.264 remuxed to fMP4 over a WebSocket, never re-encoded.

Protocol (server to page): text messages are JSON control messages (``init`` with the MSE type and the init
segment in base64, ``unsupported`` for codecs browsers cannot play remuxed, ``offline`` while the camera cannot be
read); binary messages are one frame each: 16 bytes of header (big-endian float64 wall-clock arrival time at this
server, float64 presentation time in the stream) then the moof+mdat fragment. The page needs no messages back.

Authentication is the session cookie, checked like every other route, plus the Origin header (browsers send no
CSRF header on a WebSocket; a foreign page must not ride the cookie). The session is checked again every
``RECHECK_S``: logging out or expiring ends the stream. A viewer that cannot keep up loses whole GOPs (it starts
again at the next keyframe) instead of making the server buffer without bound.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import struct
import threading
from collections import deque
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Path, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from monitor.config import LoadedConfig
from monitor.config.watch import ConfigWatcher
from monitor.ingest.live_feed import FeedHub, Fragment
from monitor.ingest.remux import StreamInfo
from monitor.runtime.camera import make_source
from monitor.web.auth import Auth
from monitor.web.ws_session import (
    FORBIDDEN,
    NOT_FOUND,
    UNAUTHORIZED,
    UNAVAILABLE,
    cookie_token,
    first_to_end,
    same_origin,
    session_alive,
    watch_session,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["monitor"])

MAX_QUEUED_BYTES = 8 * 1024 * 1024  # per viewer: beyond this it skips to the next keyframe
HEADER = struct.Struct(">dd")  # wall-clock arrival, presentation time

_hub_lock = threading.Lock()


def init_message(info: StreamInfo) -> str:
    """The control message that starts (or restarts) a player."""
    if info.mime is None:
        return json.dumps({"type": "unsupported", "codec": info.codec})
    init = base64.b64encode(info.init).decode()
    return json.dumps({"type": "init", "codec": info.codec, "mime": info.mime, "init": init,
                       "width": info.width, "height": info.height})  # fmt: skip


def media_message(fragment: Fragment) -> bytes:
    """One frame: the timing header, then moof+mdat."""
    return HEADER.pack(fragment.wall, fragment.pts_s) + fragment.data


@dataclass(slots=True)
class _Item:
    message: str | bytes
    keyframe: bool = True


class SocketViewer:
    """A feed viewer that hands every call to the event loop and queues messages within ``MAX_QUEUED_BYTES``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_bytes: int = MAX_QUEUED_BYTES) -> None:
        self.loop = loop
        self.max_bytes = max_bytes
        self.items: deque[_Item] = deque()
        self.queued = 0
        self.skipped = 0  # frames dropped because this viewer was too slow
        self._waiting_for_key = False
        self.ready = asyncio.Event()
        self.unsupported = False

    # feed thread -> loop
    def on_start(self, info: StreamInfo) -> None:
        """New stream: a fresh init message (the player resets)."""
        self.loop.call_soon_threadsafe(self._start, init_message(info), info.mime is None)

    def on_fragment(self, fragment: Fragment) -> None:
        """One frame."""
        self.loop.call_soon_threadsafe(self._put, _Item(media_message(fragment), fragment.keyframe))

    def on_offline(self, error: str) -> None:
        """Camera unreadable for now."""
        self.loop.call_soon_threadsafe(self._start, json.dumps({"type": "offline", "error": error}), False)

    # on the loop
    def _start(self, message: str, unsupported: bool) -> None:
        self.items.clear()
        self.queued = 0
        self._waiting_for_key = False
        self.unsupported = unsupported
        self._append(_Item(message))

    def _put(self, item: _Item) -> None:
        if self._waiting_for_key and not item.keyframe:
            self.skipped += 1
            return
        self._waiting_for_key = False
        if self.queued + len(item.message) > self.max_bytes:  # too slow: drop what waits, resume at a keyframe
            media = [i for i in self.items if isinstance(i.message, bytes)]
            self.skipped += len(media) + (not item.keyframe)
            self.items = deque(i for i in self.items if not isinstance(i.message, bytes))
            self.queued = sum(len(i.message) for i in self.items)
            if not item.keyframe:
                self._waiting_for_key = True
                return
        self._append(item)

    def _append(self, item: _Item) -> None:
        self.items.append(item)
        self.queued += len(item.message)
        self.ready.set()

    async def next(self) -> str | bytes:
        """The next message to send, waiting for one."""
        while not self.items:
            self.ready.clear()
            await self.ready.wait()
        item = self.items.popleft()
        self.queued -= len(item.message)
        return item.message


def _hub(websocket: WebSocket) -> FeedHub:
    state = websocket.app.state
    with _hub_lock:
        if getattr(state, "live_feeds", None) is None:
            state.live_feeds = FeedHub(state.local_packets)
        hub: FeedHub = state.live_feeds
    return hub


def _config(websocket: WebSocket) -> LoadedConfig | None:
    watcher: ConfigWatcher | None = websocket.app.state.config
    if watcher is None:
        return None
    watcher.poll()
    return watcher.current


async def _send(websocket: WebSocket, viewer: SocketViewer) -> tuple[int, str]:
    while True:
        message = await viewer.next()
        if isinstance(message, bytes):
            await websocket.send_bytes(message)
        else:
            await websocket.send_text(message)
            if viewer.unsupported:  # the page shows stills; nothing more to send
                return 1000, "codec not playable in browsers"


async def _receive(websocket: WebSocket) -> tuple[int, str]:
    while True:  # the page sends nothing; this notices it leaving
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return 1000, "viewer left"


@router.websocket("/cameras/{name}/live")
async def live_video(websocket: WebSocket, name: Annotated[str, Path(min_length=1, max_length=200)]) -> None:
    """The camera's video as fMP4 fragments (see the module docstring); for logged-in users of this site."""
    if not same_origin(websocket.headers.get("origin"), websocket.headers.get("host")):
        await websocket.close(code=FORBIDDEN)  # before accepting: the handshake fails with HTTP 403
        return
    auth: Auth = websocket.app.state.auth
    token = cookie_token(websocket)
    alive = await session_alive(auth, token) if token else False
    await websocket.accept()
    if not alive:
        await websocket.close(code=UNAUTHORIZED if alive is False else UNAVAILABLE, reason="login required")
        return
    config = _config(websocket)
    cam = config.config.cameras.get(name) if config is not None else None
    if config is None or cam is None:
        await websocket.close(code=NOT_FOUND, reason="no such camera")
        return
    viewer = SocketViewer(asyncio.get_running_loop())
    hub = _hub(websocket)
    feed = await asyncio.to_thread(hub.join, name, make_source(config, cam, cam.record_url), viewer)
    try:
        code, reason = await first_to_end(_send(websocket, viewer), watch_session(websocket, auth, token),
                                          _receive(websocket))  # fmt: skip
    finally:
        hub.leave(feed, viewer)
        if viewer.skipped:
            log.info("live %s: a slow viewer skipped %d frames", name, viewer.skipped)
    if websocket.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):  # the viewer may be gone already
            await websocket.close(code=code, reason=reason)
