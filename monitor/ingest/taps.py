"""Other readers of a camera's packets in the same process, fed by its stream worker.

A live viewer in ``monitor run`` used to open the camera a second time. Village cameras sit behind thin uplinks
and accept few sessions, so a watched camera sent its main stream twice. The worker already demuxes that stream:
it hands each packet to the listeners here as well. A listener that joins gets the packets since the newest
keyframe at once, so its picture starts without waiting for the camera's next keyframe.

Listeners are called on the worker's thread and must return at once; one that raises is dropped (logged), never
the camera.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import av

from monitor.ingest.prebuffer import BufferedPacket

log = logging.getLogger(__name__)


class PacketListener(Protocol):
    """What a worker tells its listeners, on the worker's thread."""

    def on_stream(self, stream: av.video.stream.VideoStream, backlog: Sequence[BufferedPacket]) -> None:
        """A session's first packets for this listener: ``stream`` (its codec parameters; valid only during this
        call) and the packets since the newest keyframe, oldest first (may be empty or start without one)."""

    def on_packet(self, item: BufferedPacket) -> None:
        """The next packet of the stream last announced by ``on_stream``."""

    def on_offline(self, error: str, closed: bool) -> None:
        """The session ended with ``error``; ``closed``: the worker has stopped for good (no more calls)."""


class PacketTaps:
    """A worker's listeners. ``active`` is a plain attribute: the worker reads it per packet at no cost."""

    def __init__(self, camera: str) -> None:
        self.camera = camera
        self.active = False
        self._lock = threading.RLock()  # add() tells a joiner under it, and a failing one is removed under it
        self._listening: list[PacketListener] = []  # told the current session's stream
        self._joining: list[PacketListener] = []  # told it with the next packet
        self._closed = False
        self._offline: str | None = None  # why the last session ended, until the next one begins

    def add(self, listener: PacketListener) -> bool:
        """Start telling ``listener``, from the next packet; False when the worker has stopped for good. While the
        camera is offline it is told so at once (under the lock: before any later news of a new session)."""
        with self._lock:
            if self._closed:
                return False
            self._joining.append(listener)
            self.active = True
            if self._offline is not None:
                self._call(listener, listener.on_offline, self._offline, False)
            return True

    def remove(self, listener: PacketListener) -> None:
        """Stop telling ``listener`` (a call already under way may still reach it)."""
        with self._lock:
            self._listening = [x for x in self._listening if x is not listener]
            self._joining = [x for x in self._joining if x is not listener]
            self.active = bool(self._listening or self._joining)

    def new_session(self) -> None:
        """The worker opened the stream again: every listener is told the new stream with its next packet."""
        with self._lock:
            self._joining, self._listening = self._listening + self._joining, []
            self._offline = None

    def deliver(
        self, stream: av.video.stream.VideoStream, item: BufferedPacket, backlog: Callable[[], list[BufferedPacket]]
    ) -> None:
        """Hand on ``item``, the packet just demuxed; joiners get ``backlog()`` (which already holds it) instead."""
        with self._lock:
            joining, self._joining = self._joining, []
            listening = list(self._listening)
            self._listening += joining
        if joining:
            gop = backlog()
            for listener in joining:
                self._call(listener, listener.on_stream, stream, gop)
        for listener in listening:
            self._call(listener, listener.on_packet, item)

    def offline(self, error: str, *, closed: bool = False) -> None:
        """Tell every listener the session ended; ``closed``: for good, and nobody may join any more."""
        with self._lock:
            told = self._listening + self._joining
            self._offline = error
            if closed:
                self._closed, self._listening, self._joining, self.active = True, [], [], False
        for listener in told:
            self._call(listener, listener.on_offline, error, closed)

    def _call(self, listener: PacketListener, method: Callable[..., None], *args: Any) -> None:
        try:
            method(*args)
        except Exception:  # a broken listener must not stop the camera
            log.exception("camera %s: packet listener failed; dropped", self.camera)
            self.remove(listener)
