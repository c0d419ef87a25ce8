"""Plain data types passed between the stages: ingest -> detect -> analyze -> rules -> actions.

Everything here is a frozen dataclass over NumPy arrays or builtins, so stages can be tested
without video, models or Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame sampled for detection.

    ``ts`` is the camera clock in seconds since the epoch (arrival time for live sources,
    the paced playback time for files); every rule timing is based on it.
    """

    camera: str
    seq: int
    ts: float
    image: npt.NDArray[np.uint8]  # (H, W, 3) BGR, possibly downscaled for the detector
    scale: float = 1.0  # image pixels per source pixel (<1 when converted straight to the detector's size)
    arrived: float = 0.0  # time.monotonic() when the frame was decoded (latency and staleness)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the camera's picture in source pixels (zones and boxes use these)."""
        h, w = self.image.shape[:2]
        return round(w / self.scale), round(h / self.scale)


@dataclass(frozen=True, slots=True)
class Detections:
    """People found in one frame, as parallel arrays (struct of arrays).

    ``xyxy``: (N, 4) pixel boxes; ``confidence``: (N,); ``keypoints``: (N, K, 3) x, y, visibility
    when the model is a pose model, else None; ``tracker_id``: (N,) int64 track ids once tracked
    (-1 for a detection not yet confirmed as a track), else None.
    """

    xyxy: FloatArray
    confidence: FloatArray
    keypoints: FloatArray | None = None
    tracker_id: npt.NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (N, 4), got {self.xyxy.shape}")
        if self.confidence.shape != (len(self.xyxy),):
            raise ValueError(f"confidence must have shape ({len(self.xyxy)},), got {self.confidence.shape}")
        if self.keypoints is not None and self.keypoints.shape[0] != len(self.xyxy):
            raise ValueError(f"keypoints must have {len(self.xyxy)} rows, got {self.keypoints.shape}")
        if self.tracker_id is not None and self.tracker_id.shape != (len(self.xyxy),):
            raise ValueError(f"tracker_id must have shape ({len(self.xyxy)},), got {self.tracker_id.shape}")

    @classmethod
    def empty(cls) -> Detections:
        """No detections."""
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, mask: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> Detections:
        """Select detections by boolean mask or index array."""
        kp = None if self.keypoints is None else self.keypoints[mask]
        ids = None if self.tracker_id is None else self.tracker_id[mask]
        return Detections(self.xyxy[mask], self.confidence[mask], kp, ids)

    def scaled(self, factor: float) -> Detections:
        """Boxes and keypoints multiplied by ``factor`` (to go between image and source pixels)."""
        if factor == 1.0:
            return self
        kp = None
        if self.keypoints is not None:
            kp = self.keypoints.copy()
            kp[..., :2] *= factor
        return Detections(self.xyxy * np.float32(factor), self.confidence, kp, self.tracker_id)

    def foot_points(self) -> FloatArray:
        """(N, 2) bottom-centre of each box: where a person stands on the ground."""
        x = (self.xyxy[:, 0] + self.xyxy[:, 2]) / 2
        return np.stack([x, self.xyxy[:, 3]], axis=1).astype(np.float32)

    def heights(self) -> FloatArray:
        """(N,) box heights in pixels, the body-size scale used for perspective."""
        return (self.xyxy[:, 3] - self.xyxy[:, 1]).astype(np.float32)


@dataclass(frozen=True, slots=True)
class ZoneCount:
    """How many people stand in one zone of one frame."""

    zone: str
    count: int
    members: tuple[int, ...]  # indices into the frame's Detections


@dataclass(frozen=True, slots=True)
class Observation:
    """What one detection pass saw on one camera: the unit the rules consume."""

    camera: str
    ts: float
    detections: Detections
    zones: dict[str, ZoneCount] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of a rule's incident: the one thing every rule (gathering, staffing, camera offline) emits.

    ``peak`` is the extreme count so far (most people in a gathering, fewest staff at a checkpoint).
    ``since``: when the situation really began (it may precede ``ts``, the moment the rule decided).
    On ``closed``, ``until`` is when it really ended (staff back, duty over) and ``reason`` says why.
    """

    kind: Literal["opened", "peak", "closed"]
    ts: float
    count: int
    peak: int
    since: float | None = None
    until: float | None = None
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        """How long the situation lasted (closed transitions with a start)."""
        if self.kind != "closed" or self.since is None:
            return None
        return (self.until if self.until is not None else self.ts) - self.since


@dataclass(frozen=True, slots=True)
class PlaybackResult:
    """The outcome of playing one announcement on one speaker (recorded on the incident)."""

    speaker: str
    started_at: float
    ended_at: float
    ok: bool
    error: str | None = None
