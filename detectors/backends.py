"""Build an exported-model detector for a chosen backend (export cached, session opened, warmed up)."""

from __future__ import annotations

from pathlib import Path

from detectors.base import Detector, DetectorError
from detectors.config import DetectorConfig
from detectors.export import ExportFormat, ExportSettings, ensure_export
from detectors.native import NativeDetector, Runner, inference_parallelism
from detectors.select import BackendChoice
from detectors.yolo import UltralyticsDetector


def build_backend(config: DetectorConfig, source: Path, choice: BackendChoice) -> Detector:
    """The detector for ``source`` on ``choice.backend`` ("onnxruntime", "openvino" or "tensorrt")."""
    if choice.backend == "tensorrt":
        # Dynamic profile up to imgsz x max_batch (rect inputs, no square padding); fp16 unless precision fp32.
        # Ultralytics runs the engine with its own letterbox and NMS (GPU time dominates there, not wrappers).
        half = config.precision != "fp32"
        settings = ExportSettings("engine", dynamic=True, imgsz=config.imgsz, half=half, batch=config.max_batch)
        exported = ensure_export(source, settings)
        return UltralyticsDetector(config, exported.path)
    if choice.backend not in ("onnxruntime", "openvino"):
        raise DetectorError(f"no exported-model backend {choice.backend!r}")
    fmt: ExportFormat = "openvino" if choice.backend == "openvino" else "onnx"
    exported = ensure_export(source, ExportSettings(fmt, dynamic=True))
    threads, streams = inference_parallelism(config)
    runner: Runner
    try:
        if choice.backend == "openvino":
            from detectors.openvino_backend import OpenVinoRunner

            runner = OpenVinoRunner(exported.path, threads, streams)
        else:
            from detectors.onnx_backend import OnnxRuntimeRunner

            runner = OnnxRuntimeRunner(exported.path, threads, streams)
    except Exception as exc:  # runtimes raise their own types for unreadable models
        raise DetectorError(f"cannot open {exported.path} with {choice.backend}: {exc}") from exc
    return NativeDetector(config, runner, exported, source.name, choice.backend, choice.reason)
