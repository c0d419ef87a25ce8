"""Person detector on top of Ultralytics, which loads .pt, ONNX, OpenVINO, TensorRT and Triton alike."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from numpy.typing import NDArray

from detectors.base import DetectorError
from detectors.config import DetectorConfig
from monitor.types import Detections

log = logging.getLogger(__name__)

PERSON_CLASS = 0  # COCO "person"; the pose models have only this class


def is_remote_model(model: str | Path) -> bool:
    """True for Triton URLs (http:// or grpc://), which have no local file to check."""
    parsed = urlparse(str(model))
    return parsed.scheme in {"http", "grpc"} and bool(parsed.netloc)


class UltralyticsDetector:
    """``Detector`` backed by ``ultralytics.YOLO``; person class only, results as plain ``Detections``."""

    def __init__(self, config: DetectorConfig, model_path: str | Path) -> None:
        """Load the model and warm it up, so the first real frame does not pay for lazy setup."""
        remote = is_remote_model(model_path)
        if not remote and not Path(model_path).exists():
            raise DetectorError(f"model file not found: {model_path}")
        self._config = config
        self._source = str(model_path)
        label = self._source if remote else Path(model_path).name
        self._name = f"{label}@{config.imgsz}"
        try:
            from ultralytics.models import YOLO  # deferred: importing torch costs ~0.5 GB and seconds

            self._model: Any = YOLO(self._source, task=config.task)
        except Exception as exc:  # Ultralytics raises many types for unreadable/unsupported models
            raise DetectorError(f"cannot load model {model_path}: {exc}") from exc
        self._half = use_half(config, on_cuda(config.device), not remote and Path(model_path).suffix == ".pt")
        started = time.perf_counter()
        self._predict([np.zeros((config.imgsz, config.imgsz, 3), np.uint8)])
        log.info(
            "loaded %s (task=%s), warm-up %.0f ms", self.describe(), self.task, (time.perf_counter() - started) * 1e3
        )

    @property
    def name(self) -> str:
        """Model file name and inference size, for logs and metrics labels."""
        return self._name

    @property
    def task(self) -> str:
        """The task Ultralytics resolved ("detect" or "pose")."""
        return str(self._model.task)

    def describe(self) -> str:
        """Model source and every setting that changes the output."""
        c = self._config
        return (
            f"UltralyticsDetector({self._source}, task={self._model.task}, imgsz={c.imgsz}, conf={c.confidence}, "
            f"iou={c.iou}, device={c.device or 'auto'}, precision={'fp16' if self._half else 'fp32'}, "
            f"max_batch={c.max_batch})"
        )

    def detect(self, images: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        """One ``Detections`` per BGR image, in input order.

        Images are batched only with others of the same shape: Ultralytics pads a mixed-shape batch
        to a full square, which both costs time and changes results, so a frame's detections would
        otherwise depend on which other cameras happened to share its batch.
        """
        out: list[Detections | None] = [None] * len(images)
        by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"image {i} must be (H, W, 3) BGR, got shape {image.shape}")
            by_shape[image.shape].append(i)
        step = self._config.max_batch
        for indices in by_shape.values():
            for start in range(0, len(indices), step):
                chunk = indices[start : start + step]
                for i, dets in zip(chunk, self._predict([images[i] for i in chunk]), strict=True):
                    out[i] = dets
        return [d if d is not None else Detections.empty() for d in out]

    def _predict(self, batch: list[NDArray[np.uint8]]) -> list[Detections]:
        """Run one Ultralytics predict call and convert its Results."""
        c = self._config
        kwargs: dict[str, Any] = {
            "imgsz": c.imgsz,
            "conf": c.confidence,
            "iou": c.iou,
            "classes": [PERSON_CLASS],
            "half": self._half,
            "verbose": False,
        }
        if c.device is not None:
            kwargs["device"] = c.device
        results = self._model.predict(batch, **kwargs)
        return [_to_detections(r) for r in results]


def on_cuda(device: str | None) -> bool:
    """Whether Ultralytics will run on a CUDA device for this ``device`` setting (None: it picks cuda:0 if any)."""
    import torch  # already imported by ultralytics

    if not torch.cuda.is_available():
        return False
    return device is None or device.strip().lower().split(":")[0] not in ("cpu", "mps")


def use_half(config: DetectorConfig, cuda: bool, torch_model: bool) -> bool:
    """fp16 or not: ``precision`` auto = fp16 for a torch (.pt) model on CUDA; fp16 without CUDA is an error.

    Exported files (.onnx, .engine, OpenVINO) carry their own precision, which Ultralytics reads from the
    file, so ``auto`` leaves them alone; an explicit ``fp16`` is passed on as ``half=True``.
    """
    if config.precision == "fp16":
        if not cuda:
            raise DetectorError(f"precision 'fp16' needs a CUDA device; device {config.device or 'auto'} is the CPU")
        return True
    return config.precision == "auto" and cuda and torch_model


def _to_detections(result: Any) -> Detections:
    """Convert one ``ultralytics.engine.results.Results`` to backend-free NumPy arrays."""
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return Detections.empty()
    xyxy = boxes.xyxy.cpu().numpy().astype(np.float32, copy=False)
    conf = boxes.conf.cpu().numpy().astype(np.float32, copy=False)
    keypoints = None
    if result.keypoints is not None:
        keypoints = result.keypoints.data.cpu().numpy().astype(np.float32, copy=False)
    return Detections(xyxy, conf, keypoints)
