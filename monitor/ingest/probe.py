"""`monitor probe URL`: what a camera stream is, measured, and how to detect on it cheaply."""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass

import av

from monitor.ingest.sampler import KEYFRAME_SLACK
from monitor.ingest.worker import Source, open_arguments
from monitor.redact import redact_url

SUBSTREAM_ABOVE_PX = 1280  # wider than this: decoding for detection costs more than it needs to


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Measured properties of a stream and a suggestion for its detect settings."""

    url: str
    codec: str
    width: int
    height: int
    fps: float
    keyframe_interval_s: float | None
    has_audio: bool
    sampling: str
    advice: str

    def as_dict(self) -> dict[str, object]:
        """Plain values for JSON output."""
        return asdict(self)


def probe(url: str, seconds: float = 6.0, detect_fps: float = 2.0, timeout_s: float = 5.0) -> ProbeResult:
    """Read ``seconds`` of the stream's packets (no decoding) and measure rate and keyframe interval."""
    options, timeouts = open_arguments(Source(url, is_file=False, open_timeout_s=timeout_s, read_timeout_s=timeout_s))
    with av.open(url, options=options, timeout=timeouts) as container:
        if not container.streams.video:
            raise ValueError(f"no video stream in {redact_url(url)}")
        stream = container.streams.video[0]
        has_audio = bool(container.streams.audio)
        tb = float(stream.time_base or 0)
        stamps: list[float] = []
        keyframes: list[float] = []
        started = time.monotonic()
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            t = packet.pts * tb
            stamps.append(t)
            if packet.is_keyframe:
                keyframes.append(t)
            if time.monotonic() - started > seconds or (stamps and t - stamps[0] > seconds):
                break
        ctx = stream.codec_context
        width, height = ctx.width, ctx.height
    stamps.sort()
    fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0
    gaps = [b - a for a, b in itertools.pairwise(keyframes)]
    gop = sorted(gaps)[len(gaps) // 2] if gaps else None
    keyframes_enough = gop is not None and detect_fps <= KEYFRAME_SLACK / gop
    sampling = "keyframes" if keyframes_enough else "all"
    advice = [
        f"sampling: {sampling} for detect_fps {detect_fps:g}"
        + (" (keyframes come often enough: almost no decoding)" if keyframes_enough else "")
    ]
    if not keyframes_enough and gop is not None:
        advice.append(f"a keyframe interval of {1 / detect_fps:g} s or less would allow keyframe-only decoding")
    if width > SUBSTREAM_ABOVE_PX:
        advice.append(f"{width}x{height} is more than detection needs: use the camera's substream as inputs.detect")
    return ProbeResult(
        redact_url(url), ctx.name, width, height, round(fps, 2), gop, has_audio, sampling, "; ".join(advice)
    )
