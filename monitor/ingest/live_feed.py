"""One shared demuxer per camera for live viewers: packets remuxed to fMP4 fragments and fanned out, never decoded.

The feed opens the camera itself (demux only), so it works whether or not the engine runs in this process. It
keeps the fragments since the last keyframe: a viewer who joins gets the init segment and that GOP at once and
can show a picture without waiting for the camera's next keyframe. Viewers are called on the feed's thread and
must not block (the web side hands each call to its event loop).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import av

from monitor.ingest.demux import paced_packets
from monitor.ingest.remux import Fmp4Remuxer, StreamInfo
from monitor.ingest.worker import BACKOFF_FIRST_S, Source, open_arguments
from monitor.redact import scrub

log = logging.getLogger(__name__)

# Live viewing wants the stream at once: the codec parameters come with the RTSP SDP, 1 s of probing is not needed.
LIVE_OPTIONS = {"analyzeduration": "200000", "fflags": "nobuffer"}


@dataclass(frozen=True, slots=True)
class Fragment:
    """One frame as moof+mdat, with the times a viewer needs to measure its latency."""

    data: bytes
    keyframe: bool
    pts_s: float  # presentation time in the fMP4 timeline (what the browser reports as mediaTime)
    wall: float  # wall-clock time the packet reached this process (a file source: when it was due)


class Viewer(Protocol):
    """What a feed calls, on its own thread; implementations must return at once."""

    def on_start(self, info: StreamInfo) -> None:
        """A (new) stream begins: reset the player with this init segment."""

    def on_fragment(self, fragment: Fragment) -> None:
        """The next frame."""

    def on_offline(self, error: str) -> None:
        """The camera cannot be read right now; the feed retries by itself."""


@dataclass(slots=True)
class _Pending:
    keyframe: bool
    pts_s: float
    wall: float


class LiveFeed:
    """Demuxes one camera on a thread while it has viewers; ``stop`` returns at once, the thread ends by itself."""

    def __init__(self, camera: str, source: Source) -> None:
        self.camera = camera
        self.source = source
        self._viewers: list[Viewer] = []
        self._lock = threading.Lock()
        self._info: StreamInfo | None = None
        self._gop: list[Fragment] = []  # fragments since the last keyframe, replayed to a joining viewer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"live-{camera}", daemon=True)

    def start(self) -> LiveFeed:
        """Begin reading."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the thread to end (it closes the connection within the source's read timeout)."""
        self._stop.set()

    @property
    def alive(self) -> bool:
        """Whether the reading thread still runs."""
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (tests and shutdown)."""
        self._thread.join(timeout)

    def add(self, viewer: Viewer) -> None:
        """Add a viewer; it is started at the newest keyframe when the stream is already running."""
        with self._lock:
            self._viewers.append(viewer)
            if self._info is not None:
                viewer.on_start(self._info)
                for fragment in self._gop:
                    viewer.on_fragment(fragment)

    def remove(self, viewer: Viewer) -> int:
        """Remove a viewer; returns how many are left."""
        with self._lock:
            if viewer in self._viewers:
                self._viewers.remove(viewer)
            return len(self._viewers)

    def _each(self, call: Callable[[Viewer], None]) -> None:
        for viewer in self._viewers:  # under self._lock
            try:
                call(viewer)
            except Exception:  # one broken viewer must not stop the others
                log.exception("live %s: viewer failed", self.camera)

    # -- the thread --------------------------------------------------------------------------
    def _run(self) -> None:
        delay = BACKOFF_FIRST_S
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._session()
                error = "stream ended"
            except (av.FFmpegError, OSError, ValueError) as exc:
                error = scrub(f"{type(exc).__name__}: {exc}", self.source.url)
            except Exception as exc:  # a bug must not end live view for good: reported and retried
                log.error("live %s: unexpected error: %s", self.camera, scrub(repr(exc), self.source.url))
                error = scrub(f"{type(exc).__name__}: {exc}", self.source.url)
            if self._stop.is_set():
                break
            self._offline(error)
            if time.monotonic() - started > 2 * self.source.reconnect_max_s:
                delay = BACKOFF_FIRST_S
            self._stop.wait(min(delay, self.source.reconnect_max_s) * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.source.reconnect_max_s)

    def _offline(self, error: str) -> None:
        with self._lock:
            self._info, self._gop = None, []
            self._each(lambda v: v.on_offline(error))

    def _session(self) -> None:
        problem = self.source.problem()
        if problem is not None:
            raise ValueError(problem)
        options, timeout = open_arguments(self.source)
        if not self.source.is_file:
            options = {**options, **LIVE_OPTIONS}
        with av.open(self.source.url, options=options, timeout=timeout) as container:
            if not container.streams.video:
                raise ValueError(f"no video stream in {self.source.redacted()}")
            stream = container.streams.video[0]
            remuxer = Fmp4Remuxer(stream)
            try:
                self._remux(remuxer, self._packets(container, stream), float(stream.time_base or 0))
            finally:
                remuxer.close()

    def _remux(self, remuxer: Fmp4Remuxer, packets: Iterator[tuple[av.Packet, float]], tb: float) -> None:  # type: ignore[type-arg]
        with self._lock:
            self._info, self._gop = remuxer.info, []
            self._each(lambda v: v.on_start(remuxer.info))
        if remuxer.info.mime is None:
            log.info("live %s: %s cannot be remuxed for browsers; viewers get stills", self.camera, remuxer.codec)
            self._stop.wait()  # viewers were told; keep the feed (and its answer) until they leave
            return
        pending: list[_Pending] = []  # packets muxed but not written yet (the newest one, normally)
        for packet, wall in packets:
            meta = _Pending(bool(packet.is_keyframe), (packet.pts or 0) * tb, wall)
            data = remuxer.push(packet)
            if data and pending:
                first = pending[0]  # the fragment holds every pending frame; it starts with the oldest
                self._publish(Fragment(data, first.keyframe, first.pts_s, first.wall))
                pending = []
            pending.append(meta)

    def _publish(self, fragment: Fragment) -> None:
        with self._lock:
            if fragment.keyframe:
                self._gop = []
            if fragment.keyframe or self._gop:  # nothing before the first keyframe: it could not be decoded
                self._gop.append(fragment)
                self._each(lambda v: v.on_fragment(fragment))

    def _packets(
        self, container: av.container.InputContainer, stream: av.video.stream.VideoStream
    ) -> Iterator[tuple[av.Packet, float]]:  # type: ignore[type-arg]
        """Packets with increasing timestamps (written back for the muxer) and the wall time they were handed on."""
        src = self.source
        for p in paced_packets(
            container,
            stream,
            is_file=src.is_file,
            loop=src.loop,
            speed=src.speed,
            stop=self._stop,
            label=src.redacted(),
        ):
            p.packet.dts, p.packet.pts = p.dts, p.pts
            yield p.packet, p.due


class FeedHub:
    """The running feeds by camera: a feed starts with its first viewer and stops when its last one leaves."""

    def __init__(self) -> None:
        self._feeds: dict[str, LiveFeed] = {}
        self._lock = threading.Lock()

    def join(self, camera: str, source: Source, viewer: Viewer) -> LiveFeed:
        """Attach ``viewer`` to the camera's feed, starting one (a changed source gets a fresh feed)."""
        with self._lock:
            feed = self._feeds.get(camera)
            if feed is None or feed.source != source or not feed.alive:
                feed = self._feeds[camera] = LiveFeed(camera, source).start()
            feed.add(viewer)
            return feed

    def leave(self, feed: LiveFeed, viewer: Viewer) -> None:
        """Detach ``viewer``; the feed stops when nobody watches it any more."""
        with self._lock:
            if feed.remove(viewer) == 0:
                feed.stop()
                if self._feeds.get(feed.camera) is feed:
                    del self._feeds[feed.camera]

    def feeds(self) -> dict[str, LiveFeed]:
        """The running feeds (a copy), for status and tests."""
        with self._lock:
            return dict(self._feeds)
