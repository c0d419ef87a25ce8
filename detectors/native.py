"""A ``Detector`` over a bare inference session: our own letterbox, NMS and keypoint decoding in NumPy.

The session (ONNX Runtime, OpenVINO) is a ``Runner``: (N, 3, H, W) float32 in, raw head output out.
Skipping Ultralytics saves its 3-5 ms/frame wrapper cost and keeps torch out of the process.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from detectors.config import DetectorConfig
from detectors.export import ExportedModel
from detectors.postprocess import Letterbox, decode, preprocess
from monitor.types import Detections

log = logging.getLogger(__name__)

PERSON_CLASS = 0
# Model-input pixels per session call at most (8 images at 640x640 fit): a batch of large inputs is split further than
# ``max_batch``. On the CPU runtimes batching only saves per-call overhead, which large inputs do not feel: at
# imgsz 1760 (8 sub-streams, INT8) batches of 2 cost the same CPU as batches of 8 and 0.7 GB less memory
# (bench/RESULTS.md).
BATCH_PIXELS = 4_000_000


def cpu_count() -> int:
    """CPU cores this process may run on (its affinity mask, not the whole machine)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def inference_parallelism(config: DetectorConfig) -> tuple[int, int]:
    """(threads per stream, streams): the configured values, else 1 thread and one stream per core.

    Streams only run when there is a batch to split, so the decoders get the cores back in between.
    """
    threads = config.threads or 1
    streams = config.streams or max(1, cpu_count() // threads)
    return threads, streams


class Runner(Protocol):
    """One loaded inference session; ``streams`` calls may run at the same time from different threads."""

    @property
    def streams(self) -> int:
        """How many calls can run concurrently (each on its own infer request and threads)."""
        ...

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
        self._pool = ThreadPoolExecutor(runner.streams, "infer") if runner.streams > 1 else None
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
        streams = self._runner.streams
        jobs = [
            chunk
            for hw, ids in groups.items()
            for chunk in split_for_streams(ids, streams, batch_limit(hw, c.max_batch))
        ]
        out: list[Detections] = [Detections.empty()] * len(images)
        kpt = self._model.kpt_shape

        def run(chunk: list[int]) -> None:
            pred = self._runner(preprocess([images[i] for i in chunk], [plans[i] for i in chunk]))
            for row, i in enumerate(chunk):
                out[i] = decode(pred[row], plans[i], self._num_classes, kpt, c.confidence, c.iou, PERSON_CLASS)

        if self._pool is None or len(jobs) == 1:
            for chunk in jobs:
                run(chunk)
        else:
            for future in [self._pool.submit(run, chunk) for chunk in jobs]:
                future.result()  # re-raises a failed chunk's error here
        return out


def batch_limit(input_hw: tuple[int, int], max_batch: int) -> int:
    """Images per call for inputs of ``input_hw``: ``max_batch``, fewer where they would pass BATCH_PIXELS."""
    return max(1, min(max_batch, BATCH_PIXELS // (input_hw[0] * input_hw[1])))


def split_for_streams(indices: list[int], streams: int, max_batch: int) -> list[list[int]]:
    """Chunks of at most ``max_batch``, as even as can be, their count a multiple of ``streams`` (when there
    are enough indices) so no stream sits idle while another works through a last chunk."""
    chunks = -(-len(indices) // max_batch)
    chunks = min(len(indices), -(-chunks // streams) * streams)
    if chunks == 0:
        return []
    size, extra = divmod(len(indices), chunks)
    bounds = [i * size + min(i, extra) for i in range(chunks + 1)]
    return [indices[a:b] for a, b in itertools.pairwise(bounds)]
