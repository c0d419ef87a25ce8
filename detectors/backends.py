"""Build an exported-model detector for a chosen backend (export cached, session opened, warmed up)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from detectors.base import Detector, DetectorError
from detectors.config import DetectorConfig
from detectors.export import ExportFormat, ExportSettings, ensure_export
from detectors.native import NativeDetector, Runner, inference_parallelism
from detectors.precision import CpuPrecision, Int8Verdict, at_int8_threshold, choose_cpu_precision, read_cpu_info
from detectors.select import BackendChoice
from detectors.yolo import UltralyticsDetector

log = logging.getLogger(__name__)
# OpenVINO's INFERENCE_PRECISION_HINT per choice; INT8 models keep their float parts in f32, as the gate ran them.
_HINT: dict[CpuPrecision, str] = {"int8": "f32", "bf16": "bf16", "f32": "f32"}


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

            path, hint, why, int8 = openvino_precision(config, source, exported.path)
            exported = replace(exported, path=path, directory=path.parent)  # the INT8 IR where chosen
            if int8 is not None:  # INT8 runs at the threshold its gate fitted to match f32
                config = at_int8_threshold(config, int8)
            runner = OpenVinoRunner(path, threads, streams, precision=hint)
            choice = BackendChoice(choice.backend, f"{choice.reason}; {why}", choice.device)
        else:
            from detectors.onnx_backend import OnnxRuntimeRunner

            runner = OnnxRuntimeRunner(exported.path, threads, streams)
    except Exception as exc:  # runtimes raise their own types for unreadable models
        raise DetectorError(f"cannot open {exported.path} with {choice.backend}: {exc}") from exc
    return NativeDetector(config, runner, exported, source.name, choice.backend, choice.reason)


def openvino_precision(config: DetectorConfig, source: Path, fp32: Path) -> tuple[Path, str, str, Int8Verdict | None]:
    """(IR to load, OpenVINO precision hint, why, the INT8 gate's verdict where INT8 runs) for this CPU and
    ``config.precision``; logs the choice."""
    from detectors.int8 import find_int8  # deferred: only OpenVINO needs it

    cpu = read_cpu_info()
    int8 = find_int8(source, config.imgsz) if config.precision in ("auto", "int8") else None
    precision, why = choose_cpu_precision(cpu.flags, config.precision, int8.verdict if int8 else None)
    log.info("detector precision %s at imgsz %d: %s (%s)", precision, config.imgsz, why, cpu.summary())
    if precision == "int8" and int8 is not None:
        return int8.path, _HINT[precision], f"precision {precision}: {why}", int8.verdict
    return fp32, _HINT[precision], f"precision {precision}: {why}", None
