"""Which frames to decode and convert: the cheapest strategy that still meets the detection rate.

Keyframe-only decoding skips almost all decode work, but only helps when the keyframes alone come
often enough for the detection rate; otherwise every frame is decoded (a codec needs its references)
and only the frames that will be detected are converted to pixels. ``auto`` measures the keyframe
interval from the stream and switches between the two (for example when a camera's GOP changes).
"""

from __future__ import annotations

from collections import deque
from typing import Literal

SamplingMode = Literal["auto", "keyframes", "all"]
KEYFRAME_SLACK = 1.05  # keyframes at 1.96/s still serve 2 detections/s


class Sampler:
    """Per-stream sampling state; feed it every packet and frame in order."""

    def __init__(self, detect_fps: float, mode: SamplingMode = "auto") -> None:
        self.interval = 1.0 / detect_fps
        self.detect_fps = detect_fps
        self.mode = mode
        self._keyframes: deque[float] = deque(maxlen=6)
        self._keyframes_only = mode == "keyframes"  # re-decided at each keyframe, read for every packet
        self._next_due = 0.0

    @property
    def keyframe_interval(self) -> float | None:
        """Median seconds between keyframes seen recently (None until one interval was seen)."""
        if len(self._keyframes) < 2:
            return None
        gaps = sorted(b - a for a, b in zip(self._keyframes, list(self._keyframes)[1:], strict=False))
        return gaps[len(gaps) // 2]

    @property
    def keyframes_only(self) -> bool:
        """Whether only keyframes need decoding now."""
        return self._keyframes_only

    def on_packet(self, ts: float, keyframe: bool) -> bool:
        """Record a packet; True when it must be decoded."""
        if keyframe:
            self._keyframes.append(ts)
            if self.mode == "auto":
                gop = self.keyframe_interval
                self._keyframes_only = gop is not None and gop > 0 and self.detect_fps <= KEYFRAME_SLACK / gop
        return keyframe or not self._keyframes_only

    def due(self, ts: float) -> bool:
        """Whether a decoded frame at ``ts`` should go to the detector (then it is converted to pixels)."""
        if self.mode == "auto" and self._keyframes_only:
            # keyframes were chosen because they come at most 5% faster than the detect rate: take each one
            # (rate-limiting them would drop one every few seconds and fall below the detect rate)
            self._next_due = ts + self.interval / 2
            return True
        if ts + 1e-6 < self._next_due:
            return False
        # the next sample is one interval on; after a gap (or a keyframe-only stretch) restart from now
        self._next_due = max(self._next_due + self.interval, ts + self.interval / 2)
        return True
