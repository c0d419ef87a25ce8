"""Who is on the other end of a WebSocket (live video, live talk): the session cookie and the Origin header.

A WebSocket carries the session cookie like any request, but browsers send no CSRF header on it, so the Origin
must name this host: a foreign page cannot ride the cookie. The session is checked again every ``RECHECK_S``
while the socket is open: logging out, expiring or losing the role ends it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

import redis
from fastapi import WebSocket

from monitor.web.auth import COOKIE, Auth, Session

RECHECK_S = 5.0  # a logged-out or expired session loses its socket within this long
TICK_S = 0.5  # how often the watcher looks at server shutdown
UNAUTHORIZED, FORBIDDEN, NOT_FOUND, GOING_AWAY, UNAVAILABLE = 4401, 4403, 4404, 1001, 1011


def same_origin(origin: str | None, host: str | None) -> bool:
    """True when the page that opened the socket was served by this host (scheme-less compare of host:port)."""
    if not origin or not host:
        return False
    return urlsplit(origin).netloc.lower() == host.lower()


def cookie_token(websocket: WebSocket) -> str:
    """The session token the socket's cookie carries ("" without one)."""
    return websocket.cookies.get(COOKIE, "")


async def current_session(auth: Auth, token: str) -> Session | None:
    """The live session the token names, or None; raises redis.RedisError when Redis cannot say."""
    if not token:
        return None
    return await asyncio.to_thread(auth.session, token)


async def session_alive(auth: Auth, token: str) -> bool | None:
    """Whether the cookie still names a live session; None when Redis cannot say."""
    try:
        return await current_session(auth, token) is not None
    except redis.RedisError:
        return None


async def watch_session(websocket: WebSocket, auth: Auth, token: str, role: str = "viewer") -> tuple[int, str]:
    """Return (close code, reason) once the session ends (or no longer has ``role``) or the server stops."""
    stopping: threading.Event = websocket.app.state.stopping
    waited = 0.0
    while True:
        await asyncio.sleep(TICK_S)
        if stopping.is_set():
            return GOING_AWAY, "server stopping"
        waited += TICK_S
        if waited >= RECHECK_S:
            waited = 0.0
            try:
                session = await current_session(auth, token)
            except redis.RedisError:
                continue  # Redis cannot say: keep going, ask again next time
            if session is None:
                return UNAUTHORIZED, "session ended"
            if not session.user.can(role):
                return FORBIDDEN, f"needs the {role} role"


async def first_to_end(*jobs: Coroutine[Any, Any, tuple[int, str]]) -> tuple[int, str]:
    """Run the socket's jobs (send, receive, watch the session) until one ends; its (close code, reason), or a
    normal close if it failed. The others are cancelled and awaited, so nothing outlives the socket."""
    tasks = [asyncio.create_task(job) for job in jobs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finished = next(iter(done))
        return (1000, "") if finished.exception() is not None else finished.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
