"""uvicorn's HTTP/1.1 protocol with the two limits it lacks: a deadline for a whole request, and a cap on its body.

The web page runs inside the engine's process. uvicorn has no timeout while a request arrives: its keep-alive timer
restarts at every byte, so a client that sends a header a byte at a time holds its connection forever, and a few
thousand such clients take the process's file descriptors, which the cameras and clips need too (Slowloris). Nor
does it bound a body: FastAPI reads a JSON body whole into memory. Every request of this app is small JSON, so a
request (line, headers and body) must arrive complete within ``deadline_s`` of the connection opening or of the
previous response ending, and bodies over ``max_body`` close the connection. Responses that last (event streams)
and WebSocket upgrades (live video, talking) are not limited: the deadline ends with the request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

REQUEST_DEADLINE_S = 15.0
MAX_BODY_BYTES = 1 << 20
LOG_EVERY_S = 60.0  # a flood of cut connections is one warning a minute, with the count
_ARRIVING = (h11.IDLE, h11.SEND_BODY)  # the client's side of a request still coming in


class _CutLog:
    """Counts cut connections and logs them at most once per ``LOG_EVERY_S``."""

    def __init__(self) -> None:
        self._since = 0
        self._last = 0.0

    def cut(self, why: str, client: Any) -> None:
        self._since += 1
        now = time.monotonic()
        if now - self._last >= LOG_EVERY_S:
            since = self._since
            log.warning("web: closed a connection from %s: %s (%d cut since the last warning)", client, why, since)
            self._last, self._since = now, 0


cut_log = _CutLog()


class GuardedH11Protocol(H11Protocol):
    """``H11Protocol`` closing a connection whose request does not arrive whole in time or whose body is too big."""

    deadline_s = REQUEST_DEADLINE_S
    max_body = MAX_BODY_BYTES

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._body_bytes = 0
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.SEND_BODY:
            self._body_bytes += len(data)  # counts the headers of the first chunk too: a bound, not a measure
            if self._body_bytes > self.max_body and not self.transport.is_closing():
                cut_log.cut(f"request body over {self.max_body} bytes", self.client)
                self.transport.close()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state not in _ARRIVING:
            self._disarm()  # the request is in (or the connection is over): what follows has no deadline

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._disarm()
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        self._arm()  # before: the next request (pipelined, parsed inside) disarms it again
        super().on_response_complete()

    def _arm(self) -> None:
        self._disarm()
        self._body_bytes = 0
        self._deadline = self.loop.call_later(self.deadline_s, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.conn.their_state not in _ARRIVING:
            return
        cut_log.cut(f"no complete request within {self.deadline_s:g} s", self.client)
        self.transport.close()


def guarded_protocol(deadline_s: float = REQUEST_DEADLINE_S, max_body: int = MAX_BODY_BYTES) -> type[H11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these limits."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"deadline_s": deadline_s, "max_body": max_body})
