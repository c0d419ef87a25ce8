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
PARK_MAX_GOP_S = 2.5  # a parked camera notices a change at its next keyframe: only where that comes soon enough


class Sampler:
    """Per-stream sampling state; feed it every packet and frame in order."""

    def __init__(self, detect_fps: float, mode: SamplingMode = "auto") -> None:
        self.interval = 1.0 / detect_fps
        self.detect_fps = detect_fps
        self.mode = mode
        self._keyframes: deque[float] = deque(maxlen=6)
        self._keyframes_only = mode == "keyframes"  # re-decided at each keyframe, read for every packet
        self._parked = False  # a static scene: keyframes only, whatever the detect rate (see ``on_packet``)
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
        """Whether only keyframes need decoding now for the detection rate."""
        return self._keyframes_only

    @property
    def parked(self) -> bool:
        """Whether only keyframes are decoded because the picture stands still (``on_packet(park=True)``)."""
        return self._parked

    @property
    def skipping(self) -> bool:
        """Whether frames other than keyframes are left undecoded now (for the detect rate, or parked)."""
        return self._keyframes_only or self._parked

    def on_packet(self, ts: float, keyframe: bool, park: bool = False) -> bool:
        """Record a packet; True when it must be decoded.

        ``park``: the picture has stood still (motion gate): from this keyframe on only keyframes are decoded while
        it stays True, if they come at least every PARK_MAX_GOP_S (never with ``sampling: all``). Only a keyframe
        starts or ends it: the frames after a skipped one could not be decoded until the next keyframe anyway;
        ``resume`` ends it at once right after a decoded keyframe.
        """
        if keyframe:
            self._keyframes.append(ts)
            gop = self.keyframe_interval
            if self.mode == "auto":
                self._keyframes_only = gop is not None and gop > 0 and self.detect_fps <= KEYFRAME_SLACK / gop
            self._parked = park and self.mode != "all" and gop is not None and 0 < gop <= PARK_MAX_GOP_S
        return keyframe or not self.skipping

    def resume(self) -> None:
        """Decode every frame again from the next packet on (call it only right after a keyframe was decoded)."""
        self._parked = False

    def wants(self, ts: float) -> bool:
        """Whether ``due`` would take a frame at ``ts``, without recording it (decode what is held back now)."""
        if self._parked or (self.mode == "auto" and self._keyframes_only):
            return True
        return ts + 1e-6 >= self._next_due

    def due(self, ts: float) -> bool:
        """Whether a decoded frame at ``ts`` should go to the detector (then it is converted to pixels)."""
        if self._parked or (self.mode == "auto" and self._keyframes_only):
            # keyframes were chosen because they come at most 5% faster than the detect rate: take each one
            # (rate-limiting them would drop one every few seconds and fall below the detect rate); parked, each
            # keyframe is the only look at the picture there is
            self._next_due = ts + self.interval / 2
            return True
        if ts + 1e-6 < self._next_due:
            return False
        # the next sample is one interval on; after a gap (or a keyframe-only stretch) restart from now
        self._next_due = max(self._next_due + self.interval, ts + self.interval / 2)
        return True
