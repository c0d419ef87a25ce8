"""One thread per camera: read the stream, buffer packets, publish the newest sampled frame.

The worker never waits on detection: it overwrites its single "latest frame" slot, so a slow
detector makes frames be skipped (and counted), never queued.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from av.video.reformatter import VideoReformatter

from monitor.analyze.motion import changed, thumbnail
from monitor.ingest.clips import ClipRequest, ClipResult, write_clip
from monitor.ingest.deferred import DeferredDecoder
from monitor.ingest.demux import paced_packets
from monitor.ingest.hwaccel import DecodeChoice, HwaccelMode, choose_decode
from monitor.ingest.prebuffer import BufferedPacket, PacketRing
from monitor.ingest.sampler import Sampler, SamplingMode
from monitor.ingest.taps import PacketTaps
from monitor.redact import redact_url, scrub, url_problem
from monitor.types import Frame

log = logging.getLogger(__name__)

RTSP_OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "1000000"}
BACKOFF_FIRST_S = 1.0
# Up to 1080p one decoder thread per camera: the cameras are the parallelism, and FFmpeg's default
# slice threads cost ~8% more ingest CPU (bench/RESULTS.md). Bigger pictures keep FFmpeg's threads so one
# 4K camera still decodes in real time.
SINGLE_THREAD_MAX_PIXELS = 1920 * 1088
# With the motion gate on, a picture unchanged this long parks the camera: only keyframes are decoded (the detector
# would reuse its last result for every other frame anyway) until one shows a change. Decoding was nearly all of an
# idle camera's cost (bench/RESULTS.md "Fixed overhead").
PARK_AFTER_S = 5.0


@dataclass(frozen=True, slots=True)
class Source:
    """Where a camera's video comes from: a network URL, or a file that loops like a camera."""

    url: str
    is_file: bool
    speed: float = 1.0
    loop: bool = True
    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    reconnect_max_s: float = 8.0

    def redacted(self) -> str:
        """The URL without credentials, for logs."""
        return redact_url(self.url)

    def problem(self) -> str | None:
        """Why this source cannot be opened as written (a missing file, a malformed URL), checked before FFmpeg
        sees it: FFmpeg would read a raw '/' in a password as the end of the host and connect elsewhere."""
        if self.is_file:
            return None if Path(self.url).exists() else f"video file not found: {self.url}"
        problem = url_problem(self.url, spaces=False)
        return None if problem is None else f"stream URL {self.redacted()} {problem}"


def open_arguments(src: Source) -> tuple[dict[str, str], tuple[float | None, float | None] | None]:
    """FFmpeg options and PyAV (open, read) timeouts for ``av.open`` of a camera source.

    RTSP reads are timed out by FFmpeg's own socket timeout: PyAV's read timeout runs a callback that takes
    the GIL on every network poll, which cost ~15% of a sub-stream's ingest CPU with dozens of cameras.
    """
    if src.is_file:
        return {}, None
    if src.url.startswith(("rtsp://", "rtsps://")):
        socket_timeout_us = str(round(src.read_timeout_s * 1e6))
        return {**RTSP_OPTIONS, "timeout": socket_timeout_us}, (src.open_timeout_s, None)
    return {}, (src.open_timeout_s, src.read_timeout_s)


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """Live health of one camera's ingest."""

    online: bool = False
    input_fps: float = 0.0
    frames: int = 0
    sampled: int = 0
    last_frame_ts: float | None = None
    last_arrival: float | None = None  # wall time the newest frame arrived (stall detection)
    reconnects: int = 0
    last_error: str | None = None
    width: int | None = None
    height: int | None = None
    keyframes_only: bool = False
    gop_s: float | None = None
    parked: bool = False  # a still picture: keyframes only until one shows a change (motion gate)
    decoder: str = ""  # codec and where it decodes, e.g. "h264 on cuda", or "h264 on cpu (cuda: why not)"


class StreamWorker:
    """Reads one camera until stopped, reconnecting with capped exponential backoff."""

    def __init__(
        self,
        camera: str,
        source: Source,
        detect_fps: float | None,
        ring_s: float,
        *,
        sampling: SamplingMode = "auto",
        max_side: int | None = None,
        frame_ready: threading.Event | None = None,
        hwaccel: HwaccelMode = "none",
    ) -> None:
        """``detect_fps`` None: a record-only input (never decoded); ``max_side``: convert sampled frames
        straight to at most this long side (the detector's input size) instead of full resolution;
        ``frame_ready``: set whenever a new frame is published (the detection loop waits on it instead of polling);
        ``hwaccel``: decode on this hardware device when it works (``monitor.ingest.hwaccel``), else on the CPU.
        """
        self.camera = camera
        self.source = source
        self.detect_fps = detect_fps
        self.sampling: SamplingMode = sampling
        self.max_side = max_side
        self.frame_ready = frame_ready
        self.hwaccel: HwaccelMode = hwaccel
        self._device_failed: str | None = None  # why this camera's stream could not be opened on the device
        # whether a still picture may park the camera (its motion gate is on; read per frame: a reload may change it)
        self.parkable: Callable[[], bool] = lambda: False
        self._still_thumb: npt.NDArray[np.uint8] | None = None  # the picture the stillness is measured against
        self._still_since = 0.0  # camera time of the last change
        # one converter per camera keeps its swscale context: ``frame.reformat`` builds and frees one per call, which
        # cost 0.75 ms against 0.09 ms per 640x360 frame (bench/RESULTS.md "Fixed overhead")
        self._reformatter = VideoReformatter()
        self.ring = PacketRing(ring_s)
        self.taps = PacketTaps(camera)  # live viewers in this process read the camera through here
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._clips: list[ClipRequest] = []
        self._status = WorkerStatus()
        # per-packet counters live outside the frozen status (written by the worker thread only, read by
        # status()): replacing a dataclass under the lock for every packet was a measurable share of ingest
        self._frames = 0
        self._last_frame_ts: float | None = None
        self._last_arrival: float | None = None
        self._arrivals: deque[float] = deque(maxlen=64)
        self._thread = threading.Thread(target=self._run, name=f"ingest-{camera}", daemon=True)

    # -- control -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start reading in the background."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading; pending clips are finished with the video buffered so far."""
        self._stop.set()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """Whether the worker thread is running."""
        return self._thread.is_alive()

    # -- what other stages use -----------------------------------------------------------------
    def latest(self) -> Frame | None:
        """The newest sampled frame (the detector takes it; older ones were simply replaced)."""
        with self._lock:
            return self._latest

    def status(self) -> WorkerStatus:
        """A snapshot of this camera's ingest health."""
        with self._lock:
            fps = 0.0
            if len(self._arrivals) >= 2 and self._arrivals[-1] > self._arrivals[0]:
                fps = (len(self._arrivals) - 1) / (self._arrivals[-1] - self._arrivals[0])
            return replace(
                self._status,
                input_fps=round(fps, 2),
                frames=self._frames,
                last_frame_ts=self._last_frame_ts,
                last_arrival=self._last_arrival,
            )

    def request_clip(self, request: ClipRequest) -> None:
        """Write a clip once the stream has reached ``request.end_ts`` (or when it stops)."""
        with self._lock:
            self._clips.append(request)

    # -- the thread ------------------------------------------------------------------------------
    def _describe(self, exc: BaseException) -> str:
        """An error for status, logs and incidents: without the URL's credentials, however it quotes them."""
        return scrub(f"{type(exc).__name__}: {exc}", self.source.url)

    def _run(self) -> None:
        try:
            self._read_until_stopped()
        finally:
            self.taps.offline("camera stopped", closed=True)

    def _read_until_stopped(self) -> None:
        delay = BACKOFF_FIRST_S
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._session()
                error = "stream ended" if not self._stop.is_set() else None
            except (av.FFmpegError, OSError, ValueError) as exc:
                error = self._describe(exc)
            except Exception as exc:  # a bug must not kill the camera forever; it is logged and retried
                log.error("camera %s: unexpected error: %s", self.camera, scrub(repr(exc), self.source.url))
                error = self._describe(exc)
            self._finish_clips(force=True)
            self.ring.clear()
            if error is not None:
                self.taps.offline(error)
            if self._stop.is_set():
                break
            if self.source.is_file and not self.source.loop and error == "stream ended":
                log.info("camera %s: end of %s (loop: false)", self.camera, self.source.redacted())
                self._set_status(online=False, last_error="end of file")
                return
            cap = self.source.reconnect_max_s
            if time.monotonic() - started > 2 * cap:
                delay = BACKOFF_FIRST_S  # it had been running fine: start backing off afresh
            self._set_status(online=False, last_error=error, reconnects=self._status.reconnects + 1)
            wait = min(delay, cap) * random.uniform(0.8, 1.2)  # jitter: cameras of one site do not reconnect in step
            log.warning("camera %s offline (%s); reconnecting in %.1f s", self.camera, error, wait)
            self._stop.wait(wait)
            delay = min(delay * 2, cap)
        self._finish_clips(force=True)
        self._set_status(online=False)

    def _session(self) -> None:
        """One connection: open, read until the stream ends, fails or we are stopped."""
        src = self.source
        problem = src.problem()
        if problem is not None:
            raise (FileNotFoundError if src.is_file else ValueError)(problem)
        choice = self._decode_choice()
        with self._open(choice) as container:
            if not container.streams.video:
                raise ValueError(f"no video stream in {src.redacted()}")
            stream = container.streams.video[0]
            if 0 < stream.codec_context.width * stream.codec_context.height <= SINGLE_THREAD_MAX_PIXELS:
                stream.thread_type, stream.thread_count = "NONE", 1  # before the first decode opens the codec
            decoding = f"{stream.codec_context.name} on {choice.reason}" if self.detect_fps else "not decoded"
            log.info("camera %s: opened %s (%s)", self.camera, src.redacted(), decoding)
            self._set_status(online=True, last_error=None, decoder=decoding)
            self.taps.new_session()
            unconfirmed = choice.device  # the device's name until a frame shows where it was decoded
            sampler = Sampler(self.detect_fps, self.sampling) if self.detect_fps else None
            decoder = DeferredDecoder(stream, self.camera)
            strategy: tuple[bool, bool, float | None] | None = None  # (keyframes only, parked, GOP) as last applied
            tb = float(stream.time_base or 0)
            self._still_thumb = None
            try:
                for packet, item in self._packets(container, stream):
                    self.ring.push(item)
                    if self.taps.active:
                        self.taps.deliver(stream, item, self.ring.current_gop)
                    self._count_packet(item.ts)
                    park = item.keyframe and self._still_for(item.ts) >= PARK_AFTER_S
                    if sampler is not None and sampler.on_packet(item.ts, item.keyframe, park):
                        if strategy != (sampler.keyframes_only, sampler.parked, sampler.keyframe_interval):
                            strategy = (sampler.keyframes_only, sampler.parked, sampler.keyframe_interval)  # rarely
                            stream.codec_context.skip_frame = "NONKEY" if sampler.skipping else "DEFAULT"
                            self._set_status(keyframes_only=strategy[0], parked=strategy[1], gop_s=strategy[2])
                        wanted = sampler.wants(item.ts)
                        for frame, held, held_ts in decoder.push(packet, item.ts, item.keyframe, wanted):
                            if unconfirmed is not None:
                                self._confirm_device(stream, unconfirmed)
                                unconfirmed = None
                            ts = held_ts + ((frame.pts or 0) - (held.pts or 0)) * tb
                            if sampler.due(ts) and self._publish(ts, frame) and sampler.parked:
                                sampler.resume()  # the keyframe just decoded moved: its successors decode
                    self._finish_clips(force=False, template=stream)
            finally:
                self._finish_clips(force=True, template=stream)  # while the container can still serve as template

    def _decode_choice(self) -> DecodeChoice:
        """Where this session decodes: a record-only input decodes nothing; a device that failed to open this
        camera's stream is not tried again until the worker restarts."""
        if not self.detect_fps or self.hwaccel == "none":
            return DecodeChoice(None, "cpu")
        if self._device_failed is not None:
            return DecodeChoice(None, f"cpu ({self._device_failed})")
        return choose_decode(self.hwaccel)

    def _open(self, choice: DecodeChoice) -> av.container.InputContainer:
        """Open the source, on ``choice``'s device when it has one. If that fails but the stream opens without the
        device, the device was the problem: this camera decodes on the CPU from now on, saying why."""
        src = self.source
        options, timeout = open_arguments(src)
        if choice.device is None:
            return av.open(src.url, options=options, timeout=timeout)
        try:
            return av.open(src.url, options=options, timeout=timeout, hwaccel=choice.hwaccel())
        except (av.FFmpegError, OSError, ValueError) as exc:
            container = av.open(src.url, options=options, timeout=timeout)  # fails too if the stream was the problem
            self._device_failed = f"{choice.device} failed to open the stream: {self._describe(exc)}"
            log.warning("camera %s: %s; decoding on the CPU", self.camera, self._device_failed)
            return container

    def _confirm_device(self, stream: av.video.stream.VideoStream, device: str) -> None:
        """After the first frame: FFmpeg falls back to the CPU by itself for a stream the device cannot decode
        (a profile or size it lacks); the status says so."""
        if stream.codec_context.is_hwaccel:
            return
        decoding = f"{stream.codec_context.name} on cpu ({device} cannot decode this stream)"
        log.warning("camera %s: %s", self.camera, decoding)
        self._set_status(decoder=decoding)

    def _packets(
        self, container: av.container.InputContainer, stream: av.video.stream.VideoStream
    ) -> Iterator[tuple[av.Packet, BufferedPacket]]:  # type: ignore[type-arg]
        """Demux (looping and pacing files), yielding each packet with its camera time and unwrapped stamps."""
        src = self.source
        for p in paced_packets(
            container,
            stream,
            is_file=src.is_file,
            loop=src.loop,
            speed=src.speed,
            stop=self._stop,
            label=src.redacted(),
            on_loop=stream.codec_context.flush_buffers,
        ):
            yield p.packet, BufferedPacket(p.ts, p.pts, p.dts, p.duration, bool(p.packet.is_keyframe), p.packet)

    def _count_packet(self, ts: float) -> None:
        """Every packet is one frame of video arriving (stall detection and input fps need no decoding)."""
        self._arrivals.append(time.monotonic())
        self._frames += 1
        self._last_frame_ts = ts
        self._last_arrival = time.time()

    def _still_for(self, ts: float) -> float:
        """Seconds the picture has stood still at camera time ``ts`` (0 unless the camera may park)."""
        if self._still_thumb is None or not self.parkable():
            return 0.0
        return ts - self._still_since

    def _moved(self, ts: float, image: npt.NDArray[np.uint8]) -> bool:
        """Whether the picture changed since the last change (the motion gate's test; only when it may park)."""
        if not self.parkable():
            self._still_thumb = None
            return False
        thumb = thumbnail(image)
        if not changed(self._still_thumb, thumb):
            return False
        self._still_thumb, self._still_since = thumb, ts
        return True

    def _publish(self, ts: float, frame: av.VideoFrame) -> bool:
        """Convert a sampled frame to BGR pixels, straight at the detector's size when that is smaller; True when
        the picture moved (see ``_moved``)."""
        scale, w, h = 1.0, frame.width, frame.height
        if self.max_side and max(frame.width, frame.height) > self.max_side:
            scale = self.max_side / max(frame.width, frame.height)
            w, h = round(frame.width * scale / 2) * 2, round(frame.height * scale / 2) * 2
            scale = w / frame.width
        bgr = self._reformatter.reformat(frame, width=w, height=h, format="bgr24").to_ndarray()
        image: npt.NDArray[np.uint8] = np.ascontiguousarray(bgr, dtype=np.uint8)
        moved = self._moved(ts, image)
        with self._lock:
            seq = self._status.sampled + 1
            self._latest = Frame(self.camera, seq, ts, image, scale, time.monotonic())
            self._status = replace(self._status, sampled=seq, width=frame.width, height=frame.height)
        if self.frame_ready is not None:
            self.frame_ready.set()
        return moved

    def _set_status(self, **changes: object) -> None:
        with self._lock:
            self._status = replace(self._status, **changes)  # type: ignore[arg-type]

    def _finish_clips(self, force: bool, template: av.video.stream.VideoStream | None = None) -> None:
        """Write every requested clip whose end the stream has reached (all of them when forced)."""
        if not force and not self._clips:
            return  # the usual case, checked for every packet
        newest = self.ring.newest_ts
        with self._lock:
            due = [c for c in self._clips if force or (newest is not None and newest >= c.end_ts)]
            self._clips = [c for c in self._clips if c not in due]
        for req in due:
            result = self._write(req, template)
            try:
                req.on_done(result)
            except Exception:
                log.exception("camera %s: clip callback failed", self.camera)

    def _write(self, req: ClipRequest, template: av.video.stream.VideoStream | None) -> ClipResult:
        if template is None:
            return ClipResult(None, None, None, "the stream stopped before the clip could be written")
        try:
            result = write_clip(req.path, template, self.ring.window(req.start_ts, req.end_ts))
        except (av.FFmpegError, OSError, ValueError) as exc:
            log.error("camera %s: writing clip %s failed: %s", self.camera, req.path, exc)
            return ClipResult(None, None, None, self._describe(exc))
        if result.path is not None:
            log.info(
                "camera %s: clip %s (%.1f s)",
                self.camera,
                Path(result.path).name,
                (result.end_ts or 0) - (result.start_ts or 0),
            )
        return result
