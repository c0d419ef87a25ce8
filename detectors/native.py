"""A ``Detector`` over a bare inference session: our own letterbox, NMS and keypoint decoding in NumPy.

The session (ONNX Runtime, OpenVINO) is a ``Runner``: (N, 3, H, W) float32 in, raw head output out.
Skipping Ultralytics saves its 3-5 ms/frame wrapper cost and keeps torch out of the process.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from detectors.config import DetectorConfig
from detectors.export import ExportedModel
from detectors.postprocess import Letterbox, decode, preprocess
from monitor.types import Detections

log = logging.getLogger(__name__)

PERSON_CLASS = 0


def default_threads(config: DetectorConfig) -> int:
    """Inference threads: the configured count, else half the cores (decoders need the rest)."""
    if config.threads is not None:
        return config.threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // 2)


class Runner(Protocol):
    """One loaded inference session."""

    def __call__(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Raw head output (N, 4 + classes + extra, anchors) for an (N, 3, H, W) batch."""
        ...

    def describe(self) -> str:
        """Runtime and its settings, for the startup log."""
        ...


class NativeDetector:
    """``Detector`` for an exported YOLO model run by a bare ``Runner``; same output as ``UltralyticsDetector``."""

    def __init__(
        self, config: DetectorConfig, runner: Runner, model: ExportedModel, label: str, backend: str, reason: str = ""
    ) -> None:
        """Keep the session and warm it up (this compiles the square input size)."""
        self._config = config
        self._reason = reason
        self._runner = runner
        self._model = model
        self._backend = backend
        self._name = f"{label}@{config.imgsz}"
        self._num_classes = len(model.names)
        started = time.perf_counter()
        self.detect([np.zeros((config.imgsz, config.imgsz, 3), np.uint8)])
        log.info("loaded %s, warm-up %.0f ms", self.describe(), (time.perf_counter() - started) * 1e3)

    @property
    def name(self) -> str:
        """Model file name and inference size, for logs and metrics labels."""
        return self._name

    @property
    def task(self) -> str:
        """The model task ("pose" or "detect"), from the export's metadata."""
        return self._model.task

    @property
    def backend(self) -> str:
        """The runtime actually used ("onnxruntime", "openvino")."""
        return self._backend

    def describe(self) -> str:
        """Backend, model source and export, and every setting that changes the output."""
        c = self._config
        return (
            f"NativeDetector(backend={self._backend} [{self._reason}], {self._name.rsplit('@', 1)[0]}, "
            f"export={self._model.path}, "
            f"task={self.task}, imgsz={c.imgsz}, conf={c.confidence}, iou={c.iou}, max_batch={c.max_batch}, "
            f"{self._runner.describe()})"
        )

    def detect(self, images: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        """One ``Detections`` per BGR image, in input order.

        Images whose letterboxed input has the same size are batched together (one session call);
        each image's result depends only on that image, never on its batch mates.
        """
        c = self._config
        plans: list[Letterbox] = []
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"image {i} must be (H, W, 3) BGR, got shape {image.shape}")
            plan = Letterbox.plan((image.shape[0], image.shape[1]), c.imgsz, self._model.stride)
            plans.append(plan)
            groups[plan.input_hw].append(i)
        out: list[Detections] = [Detections.empty()] * len(images)
        kpt = self._model.kpt_shape
        for indices in groups.values():
            for start in range(0, len(indices), c.max_batch):
                chunk = indices[start : start + c.max_batch]
                pred = self._runner(preprocess([images[i] for i in chunk], [plans[i] for i in chunk]))
                for row, i in enumerate(chunk):
                    out[i] = decode(pred[row], plans[i], self._num_classes, kpt, c.confidence, c.iou, PERSON_CLASS)
        return out
