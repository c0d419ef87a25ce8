"""One shared demuxer per camera for live viewers: packets remuxed to fMP4 fragments and fanned out, never decoded.

Where the engine runs in this process and reads the same input, the feed takes the packets its stream worker
demuxes (``monitor.ingest.taps``): the camera is not opened a second time, and the first picture comes from the
worker's buffer at once. Otherwise (``monitor serve``, a camera another node runs, or none reading it) the feed
opens the camera itself, demux only. It keeps the fragments since the last keyframe: a viewer who joins gets the
init segment and that GOP at once and can show a picture without waiting for the camera's next keyframe. Viewers
are called on the feed's thread and must not block (the web side hands each call to its event loop).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import av

from monitor.ingest.demux import PacedPacket, paced_packets
from monitor.ingest.prebuffer import BufferedPacket
from monitor.ingest.remux import Fmp4Remuxer, StreamInfo
from monitor.ingest.taps import PacketTaps
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


# Events a tapped feed's thread has not taken yet: beyond this the viewers' stream skips to the next keyframe
# rather than the worker's packets piling up in memory (the feed thread only remuxes: it should never lag).
INBOX_LIMIT = 1000

# Finds the running worker's packets of a camera's input in this process, if any (see the module docstring).
LocalPackets = Callable[[str, Source], PacketTaps | None]


class LiveFeed:
    """Reads one camera on a thread while it has viewers; ``stop`` returns at once, the thread ends by itself."""

    def __init__(self, camera: str, source: Source, local: LocalPackets | None = None) -> None:
        self.camera = camera
        self.source = source
        self.local = local
        self.tapped = False  # whether the feed now takes a running worker's packets (status and tests)
        self._viewers: list[Viewer] = []
        self._lock = threading.Lock()
        self._info: StreamInfo | None = None
        self._gop: list[Fragment] = []  # fragments since the last keyframe, replayed to a joining viewer
        self._error: str | None = None  # why the camera cannot be read now (told to a viewer joining meanwhile)
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
        """Add a viewer; it is started at the newest keyframe when the stream is already running, and told when
        the camera is offline."""
        with self._lock:
            self._viewers.append(viewer)
            if self._info is not None:
                viewer.on_start(self._info)
                for fragment in self._gop:
                    viewer.on_fragment(fragment)
            elif self._error is not None:
                viewer.on_offline(self._error)

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
                taps = self.local(self.camera, self.source) if self.local is not None else None
                error = self._own_session() if taps is None else self._tapped_session(taps)
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
            self._info, self._gop, self._error = None, [], error
            self._each(lambda v: v.on_offline(error))

    def _own_session(self) -> str:
        """One connection of the feed's own to the camera, until it ends or fails."""
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
            fragments = _Fragmenter(Fmp4Remuxer(stream), stream.time_base or Fraction(0), self._publish)
            try:
                if self._begin(fragments.remuxer):
                    for p in self._packets(container, stream):
                        fragments.push(p.packet, p.due)
                else:
                    self._stop.wait()  # viewers were told; keep the feed (and its answer) until they leave
            finally:
                fragments.close()
        return "stream ended"

    def _tapped_session(self, taps: PacketTaps) -> str:
        """Take the packets of the worker behind ``taps`` until it stops for good (a reload, the engine's end)."""
        inbox = _Inbox(self._stop)
        if not taps.add(inbox):
            return "camera stopped"
        self.tapped = True
        log.info("live %s: taking the engine's packets of %s", self.camera, self.source.redacted())
        fragments: _Fragmenter | None = None
        try:
            while (event := inbox.take()) is not None:
                if isinstance(event, _Opened):
                    if fragments is not None:
                        fragments.close()
                    fragments = _Fragmenter(event.remuxer, event.time_base, self._publish)
                    if not self._begin(event.remuxer):
                        taps.remove(inbox)
                        self._stop.wait()  # as for a feed of its own: the viewers were told
                        return "stopped"
                    for item in event.backlog:
                        fragments.push(item.copy(event.time_base), item.ts)
                elif isinstance(event, _Arrived):
                    if fragments is not None:
                        fragments.push(event.item.copy(fragments.time_base), event.wall)
                else:
                    if fragments is not None:
                        fragments.close()
                        fragments = None
                    if event.closed:
                        return event.error
                    self._offline(event.error)
            return "stopped"
        finally:
            taps.remove(inbox)
            self.tapped = False
            if fragments is not None:
                fragments.close()

    def _begin(self, remuxer: Fmp4Remuxer) -> bool:
        """Tell the viewers a stream begins; False when browsers cannot play it remuxed (viewers get stills)."""
        with self._lock:
            self._info, self._gop, self._error = remuxer.info, [], None
            self._each(lambda v: v.on_start(remuxer.info))
        if remuxer.info.mime is None:
            log.info("live %s: %s cannot be remuxed for browsers; viewers get stills", self.camera, remuxer.codec)
            return False
        return True

    def _publish(self, fragment: Fragment) -> None:
        with self._lock:
            if fragment.keyframe:
                self._gop = []
            if fragment.keyframe or self._gop:  # nothing before the first keyframe: it could not be decoded
                self._gop.append(fragment)
                self._each(lambda v: v.on_fragment(fragment))

    def _packets(
        self, container: av.container.InputContainer, stream: av.video.stream.VideoStream
    ) -> Iterator[PacedPacket]:
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
            yield p


class _Fragmenter:
    """One stream's remuxer and the frames it has taken but not written yet (the newest one, normally)."""

    def __init__(self, remuxer: Fmp4Remuxer, time_base: Fraction, publish: Callable[[Fragment], None]) -> None:
        self.remuxer = remuxer
        self.time_base = time_base
        self._tb = float(time_base)
        self._publish = publish
        self._pending: list[_Pending] = []
        self._origin: int | None = None  # the first packet's dts: the muxer starts its timeline there, at 0

    def push(self, packet: av.Packet, wall: float) -> None:  # type: ignore[type-arg]
        """Mux ``packet`` (which reached this process at ``wall``); publish the fragment it completed, if any."""
        if self._origin is None:
            self._origin = packet.dts or 0
        # the time the browser plays it at (its mediaTime): the page matches it with ``wall`` to show the latency
        meta = _Pending(bool(packet.is_keyframe), ((packet.pts or 0) - self._origin) * self._tb, wall)
        data = self.remuxer.push(packet)
        if data and self._pending:
            first = self._pending[0]  # the fragment holds every pending frame; it starts with the oldest
            self._publish(Fragment(data, first.keyframe, first.pts_s, first.wall))
            self._pending = []
        self._pending.append(meta)

    def close(self) -> None:
        """Drop the remuxer (the last frame's fragment is not needed by anyone)."""
        self.remuxer.close()


@dataclass(frozen=True, slots=True)
class _Opened:
    """The worker (re)opened the stream: its remuxer, time base and the packets since its newest keyframe."""

    remuxer: Fmp4Remuxer
    time_base: Fraction
    backlog: Sequence[BufferedPacket]


@dataclass(frozen=True, slots=True)
class _Arrived:
    """The next packet, and when the worker handed it on."""

    item: BufferedPacket
    wall: float


@dataclass(frozen=True, slots=True)
class _Ended:
    """The worker's session ended (``closed``: the worker stopped for good)."""

    error: str
    closed: bool


class _Inbox:
    """A tapped feed's ``PacketListener``: the worker's calls become events for the feed's thread.

    The remuxer is made here, on the worker's thread, while the worker's stream (its template) is certainly open.
    """

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self._events: queue.SimpleQueue[_Opened | _Arrived | _Ended] = queue.SimpleQueue()  # C: cheap per packet
        self._skipping = False  # after an overflow: packets are dropped until a keyframe finds room

    def on_stream(self, stream: av.video.stream.VideoStream, backlog: Sequence[BufferedPacket]) -> None:
        try:
            opened: _Opened | _Ended = _Opened(Fmp4Remuxer(stream), stream.time_base or Fraction(0), backlog)
        except (av.FFmpegError, ValueError) as exc:
            opened = _Ended(f"cannot remux the stream: {type(exc).__name__}: {exc}", closed=True)
        self._events.put(opened)

    def on_packet(self, item: BufferedPacket) -> None:
        full = self._events.qsize() >= INBOX_LIMIT
        if full or (self._skipping and not item.keyframe):
            self._skipping = True  # the viewers' stream goes on from the next keyframe: nothing broken in between
            return
        self._skipping = False
        self._events.put(_Arrived(item, time.time()))

    def on_offline(self, error: str, closed: bool) -> None:
        self._events.put(_Ended(error, closed))

    def take(self) -> _Opened | _Arrived | _Ended | None:
        """The next event, waiting for one; None once the feed is stopped."""
        while not self._stop.is_set():
            try:
                event = self._events.get(timeout=0.25)  # the stop flag is an Event of its own: looked at 4x a second
            except queue.Empty:
                continue
            return None if self._stop.is_set() else event
        return None


class FeedHub:
    """The running feeds by camera: a feed starts with its first viewer and stops when its last one leaves."""

    def __init__(self, local: LocalPackets | None = None) -> None:
        """``local``: the running engine's packets of a camera's input, when the engine runs in this process."""
        self.local = local
        self._feeds: dict[str, LiveFeed] = {}
        self._lock = threading.Lock()

    def join(self, camera: str, source: Source, viewer: Viewer) -> LiveFeed:
        """Attach ``viewer`` to the camera's feed, starting one (a changed source gets a fresh feed)."""
        with self._lock:
            feed = self._feeds.get(camera)
            if feed is None or feed.source != source or not feed.alive:
                feed = self._feeds[camera] = LiveFeed(camera, source, self.local).start()
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
