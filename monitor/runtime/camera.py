"""What the engine keeps per camera: its input workers, rules, zones in pixels, tracker and counters."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from detectors import Detector
from detectors.calibration import Calibration
from monitor.analyze.filters import DetectionFilter
from monitor.analyze.tracking import PersonTracker
from monitor.analyze.zones import Polygon, to_pixels
from monitor.config import CameraConfig, LoadedConfig, file_path
from monitor.ingest.worker import Source, StreamWorker
from monitor.rules.models import RuleConfig
from monitor.rules.runtime import OfflineRuntime, RuleRuntime
from monitor.types import Frame, Observation

RING_MARGIN_S = 6.0  # covers a keyframe interval before the pre-roll


@dataclass
class ActiveRule:
    """A configured rule's runtime (its incidents are the dispatcher's business)."""

    runtime: RuleRuntime

    @property
    def config(self) -> RuleConfig:
        """The rule's configuration."""
        return self.runtime.config


@dataclass
class CameraRuntime:
    """Everything the detection loop keeps per camera."""

    name: str
    config: CameraConfig
    worker: StreamWorker  # detection input
    recorder: StreamWorker  # clip input (the same worker for a single-input camera)
    rules: list[ActiveRule] = field(default_factory=list)
    polygons: dict[str, Polygon] = field(default_factory=dict)
    filters: dict[str, DetectionFilter] = field(default_factory=dict)
    polygon_size: tuple[int, int] | None = None
    tracker: PersonTracker = field(default_factory=PersonTracker)
    last_seq: int = 0
    dropped: int = 0
    detections: int = 0
    detect_times: deque[float] = field(default_factory=lambda: deque(maxlen=20))  # for the detect rate
    last: Observation | None = None
    last_frame: Frame | None = None
    offline: OfflineRuntime | None = None
    detector: Detector | None = None
    motion_thumb: npt.NDArray[np.uint8] | None = None
    calibration: Calibration | None = None  # the latest calibration result (shown; the setting is in detector)

    def __post_init__(self) -> None:
        # a still picture parks the detect input (keyframes only) while this camera's motion gate is on; read
        # through the runtime: a reload replaces ``config`` in place
        self.worker.parkable = lambda: self.config.motion_gate

    def zone_polygons(self, size: tuple[int, int]) -> dict[str, Polygon]:
        """Zones in pixels for this frame size (recomputed only when the size changes)."""
        if size != self.polygon_size:
            self.polygons = {n: to_pixels(z.points, size, z.relative) for n, z in self.config.zones.items()}
            self.filters = {n: z.filter.build(size) for n, z in self.config.zones.items() if z.filter is not None}
            self.polygon_size = size
        return self.polygons


def make_source(loaded: LoadedConfig, cam: CameraConfig, url: str) -> Source:
    """Where a camera's video comes from, with file paths resolved against the config file."""
    path = file_path(url, loaded.base_dir)
    return Source(
        str(path) if path is not None else url,
        path is not None,
        cam.speed,
        cam.loop,
        cam.open_timeout_s,
        cam.read_timeout_s,
        cam.reconnect_max_s,
    )


def make_workers(
    loaded: LoadedConfig, name: str, ring_s: float, frame_ready: threading.Event | None = None
) -> tuple[StreamWorker, StreamWorker]:
    """The detect worker and the record worker of a camera (the same one for a single input); the detect worker
    sets ``frame_ready`` on each new frame."""
    cam = loaded.config.cameras[name]
    settings = loaded.detector_for(name)
    # convert straight to the detector's input size, unless tiles need the full picture
    max_side = None if getattr(settings, "tiles", None) else settings.imgsz
    detect = StreamWorker(
        name,
        make_source(loaded, cam, cam.detect_url),
        cam.detect_fps,
        ring_s if cam.inputs is None else 0.0,
        sampling=cam.sampling,
        max_side=max_side,
        frame_ready=frame_ready,
        hwaccel=cam.hwaccel,
    )
    if cam.inputs is None:
        return detect, detect
    return detect, StreamWorker(f"{name}/record", make_source(loaded, cam, cam.record_url), None, ring_s)
