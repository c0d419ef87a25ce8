"""The detector interface the pipeline depends on, so backends (Ultralytics, bare ONNX/OpenVINO) swap freely."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from monitor.types import Detections


class DetectorError(RuntimeError):
    """A detector could not be built or run (missing model file, unloadable backend)."""


@runtime_checkable
class Detector(Protocol):
    """Finds people in batches of BGR frames.

    Batched because several cameras' frames are sampled at the same tick; one call amortises the
    per-call overhead and lets GPU backends fill a batch.
    """

    @property
    def name(self) -> str:
        """Short identifier for logs and metrics, e.g. ``yolo11n-pose.pt@960``."""
        ...

    def describe(self) -> str:
        """One line with the model path and settings, logged at startup to reproduce a run."""
        ...

    def detect(self, images: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        """Return one ``Detections`` (person class only, pixel coords of that image) per (H, W, 3) BGR image."""
        ...
