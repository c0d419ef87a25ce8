"""INT8 OpenVINO model: NNCF post-training quantization of the f32 IR, calibrated on camera frames, gated, cached.

Calibration frames are letterboxed exactly as inference does (``Letterbox`` + ``preprocess``), so the
activation ranges NNCF measures are the ones the model sees. The head's box/keypoint decoding (the ops
after its last convolutions: DFL, sigmoids, the grid arithmetic and concats) stays in float: quantizing
pixel coordinates to 256 levels shifts boxes by pixels. After quantizing, the gate
(``detectors.int8_gate``) runs the f32 and INT8 models on held-out frames and stores its decision and
numbers as gate.json next to the model; ``find_int8`` hands the newest cached model to the precision
choice, which only uses it if it passed.

Cache: ``<model>.exports/openvino-int8-<imgsz>-cal<digest>-nncf<version>-<model sha256[:12]>/`` (model.xml,
model.bin, gate.json, manifest.json), built atomically under a lock like the other exports. The digest
covers the calibration and gate frames, the labels and the gate's settings.

    python -m detectors.int8 --imgsz 960 --source sample_videos/square.mp4 [--source rtsp://...]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detectors.base import DetectorError
from detectors.config import DetectorConfig
from detectors.export import (
    MANIFEST,
    ExportedModel,
    ExportSettings,
    cache_dir,
    clear_leftovers,
    ensure_export,
    install_dir,
    locked,
    read_manifest,
    writing_into,
)
from detectors.int8_gate import (
    CONFIDENCE_SCALES,
    DEFAULT_MARGIN_MAE,
    DEFAULT_MARGIN_RECALL,
    Boxes,
    GateResult,
    Scored,
    above,
    fit_confidence_scale,
    run_gate,
)
from detectors.model_fetch import sha256_file
from detectors.native import NativeDetector
from detectors.openvino_backend import OpenVinoRunner
from detectors.postprocess import Letterbox, preprocess
from detectors.precision import Int8Verdict, int8_instructions

log = logging.getLogger(__name__)

GATE = "gate.json"
MANIFEST_VERSION = 3  # 2: the gate fits INT8's confidence threshold (gate.json confidence_scale); 3: 1-box slack
DEFAULT_CALIBRATION_FRAMES = 128  # NNCF's statistics settle well before 300 on one scene; time grows linearly
DEFAULT_GATE_FRAMES = 40
FIT_FRAMES = 64  # calibration frames INT8's confidence threshold is fitted on (f32 and INT8 run on each)
Frame = NDArray[np.uint8]


def nncf_version() -> str:
    """The installed NNCF's version without importing it (its import pulls torch: ~6 s)."""
    try:
        return metadata.version("nncf")
    except metadata.PackageNotFoundError:
        return "none"


@dataclass(frozen=True, slots=True)
class Int8Model:
    """A cached INT8 IR and its gate's verdict."""

    directory: Path
    path: Path
    verdict: Int8Verdict
    gate: dict[str, Any]
    rebuilt: bool


@dataclass(frozen=True, slots=True)
class GateSettings:
    """Detection thresholds the gate compares at, and the margins INT8 may lose."""

    confidence: float = 0.35
    iou: float = 0.5
    margin_mae: float = DEFAULT_MARGIN_MAE
    margin_recall: float = DEFAULT_MARGIN_RECALL


def sample_frames(sources: Sequence[str], count: int, live_step: int = 10) -> list[Frame]:
    """About ``count`` BGR frames spread over ``sources`` (files: evenly over the file; streams: every
    ``live_step``-th frame). Deterministic for files, so the same files give the same calibration set."""
    av: Any = importlib.import_module("av")
    per = math.ceil(count / max(1, len(sources)))
    frames: list[Frame] = []
    for source in sources:
        taken = 0
        with av.open(source, timeout=10.0) as container:
            stream = container.streams.video[0]
            total = int(stream.frames or 0)
            step = max(1, total // per) if total else live_step
            for i, frame in enumerate(container.decode(stream)):
                if i % step == step // 2:
                    frames.append(np.asarray(frame.to_ndarray(format="bgr24"), np.uint8))
                    taken += 1
                    if taken >= per:
                        break
        if not taken:
            raise DetectorError(f"no frames decoded from calibration source {source}")
    return frames


def split_frames(frames: Sequence[Frame], gate: int) -> tuple[list[Frame], list[Frame]]:
    """(calibration, gate): ``gate`` frames spread evenly over ``frames`` are held out of calibration."""
    if gate <= 0 or gate >= len(frames):
        raise ValueError(f"need more than {gate} frames to hold {gate} out for the gate, got {len(frames)}")
    held = {round(i * len(frames) / gate) for i in range(gate)}
    return [f for i, f in enumerate(frames) if i not in held], [f for i, f in enumerate(frames) if i in held]


def model_inputs(frames: Sequence[Frame], imgsz: int, stride: int) -> list[NDArray[np.float32]]:
    """Each frame as the (1, 3, H, W) float input inference would give the model."""
    return [preprocess([f], [Letterbox.plan((f.shape[0], f.shape[1]), imgsz, stride)]) for f in frames]


def digest(
    calibration: Sequence[Frame], gate: Sequence[Frame], truth: Sequence[Boxes] | None, settings: GateSettings
) -> str:
    """Short sha256 of everything the INT8 model and its gate result depend on besides model and versions."""
    h = hashlib.sha256(json.dumps([len(calibration), len(gate), repr(settings)]).encode())
    for frame in [*calibration, *gate]:
        h.update(str(frame.shape).encode())
        h.update(np.ascontiguousarray(frame).data)
    for boxes in truth or ():
        h.update(np.asarray(boxes, np.float64).reshape(-1, 4).tobytes())
    return h.hexdigest()[:12]


def _root(source: Path, source_sha: str) -> Path:
    return cache_dir(source, ExportSettings("openvino"), source_sha).parent


def _prefix(imgsz: int) -> str:
    return f"openvino-int8-{imgsz}-cal"


def _expect(source_sha: str, imgsz: int) -> dict[str, Any]:
    return {"version": MANIFEST_VERSION, "source_sha256": source_sha, "imgsz": imgsz, "nncf": nncf_version()}


def _loaded(directory: Path, manifest: dict[str, Any], rebuilt: bool) -> Int8Model:
    gate = json.loads((directory / GATE).read_text(encoding="utf-8"))
    verdict = Int8Verdict(bool(gate["passed"]), str(gate["summary"]), float(gate.get("confidence_scale", 1.0)))
    return Int8Model(directory, directory / manifest["main"], verdict, gate, rebuilt)


def find_int8(source: Path, imgsz: int) -> Int8Model | None:
    """The newest verified INT8 model of ``source`` at ``imgsz`` for the installed NNCF (None: none built)."""
    if not source.is_file():
        return None
    sha = sha256_file(source)
    root, expect = _root(source, sha), _expect(sha, imgsz)
    found: list[tuple[float, Path, dict[str, Any]]] = []
    for directory in root.glob(f"{_prefix(imgsz)}*-nncf{nncf_version()}-{sha[:12]}"):
        manifest = read_manifest(directory, expect)
        if manifest is not None:
            found.append((float(manifest.get("created", 0)), directory, manifest))
    if not found:
        return None
    _, directory, manifest = max(found, key=lambda item: item[0])
    return _loaded(directory, manifest, rebuilt=False)


def ensure_int8(
    source: Path,
    imgsz: int,
    calibration: Sequence[Frame],
    gate_frames: Sequence[Frame],
    truth: Sequence[Boxes] | None = None,
    settings: GateSettings = GateSettings(),
    truth_name: str = "labels",
) -> Int8Model:
    """The cached INT8 model for exactly these inputs, quantized and gated first if missing.

    ``truth`` (one xyxy array per gate frame) makes the gate score against labels; None scores agreement
    with the f32 model. The INT8 model is kept even when it fails the gate, so the refusal is cached too.
    """
    fp32 = ensure_export(source, ExportSettings("openvino"))
    sha = sha256_file(source)
    key = digest(calibration, gate_frames, truth, settings)
    target = _root(source, sha) / f"{_prefix(imgsz)}{key}-nncf{nncf_version()}-{sha[:12]}"
    expect = {**_expect(sha, imgsz), "calibration": key}
    manifest = read_manifest(target, expect)
    if manifest is not None:
        return _loaded(target, manifest, rebuilt=False)
    with locked(target.with_name(target.name + ".lock")):
        manifest = read_manifest(target, expect)
        if manifest is not None:
            return _loaded(target, manifest, rebuilt=False)
        started = time.monotonic()
        clear_leftovers(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
        try:
            with writing_into(target.parent, f"INT8 model at imgsz {imgsz} not built"):
                quantize(fp32, imgsz, calibration, tmp / "model.xml")
                fit = spread(calibration, FIT_FRAMES)
                result = gate(fp32, tmp / "model.xml", imgsz, gate_frames, truth, settings, truth_name, fit)
                (tmp / GATE).write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
                files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
                built = {
                    **expect,
                    "main": "model.xml",
                    "files": files,
                    "created": time.time(),
                    "frames": len(calibration),
                }
                (tmp / MANIFEST).write_text(json.dumps(built, indent=2), encoding="utf-8")
                install_dir(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        manifest = read_manifest(target, expect)
        if manifest is None:
            raise DetectorError(f"INT8 model {target} did not verify right after it was built")
        model = _loaded(target, manifest, rebuilt=True)
        log.info(
            "INT8 %s in %.0f s: gate %s: %s",
            target.name,
            time.monotonic() - started,
            "passed" if model.verdict.passed else "REFUSED",
            model.verdict.summary,
        )
        return model


def int8_wanted(config: DetectorConfig, detector: object, source: str | Path, flags: frozenset[str]) -> bool:
    """Would ``precision: auto`` run ``detector`` (of the model at ``source``) in INT8 if its model were built?
    OpenVINO on a CPU where INT8 pays (``int8_instructions``), a local .pt model, no tiles, and no INT8 model at this
    size yet (one the gate refused counts as built: it is not built again)."""
    if config.precision != "auto" or config.tiles is not None or getattr(detector, "backend", None) != "openvino":
        return False
    if int8_instructions(flags) is None:
        return False
    return isinstance(source, Path) and source.suffix == ".pt" and find_int8(source, config.imgsz) is None


def head_decode_ops(model: Any) -> list[str]:
    """Names of the head's decoding ops (everything of the last Sigmoid's module that is not a conv branch)."""
    ops = model.get_ordered_ops()
    sigmoids = [op.get_friendly_name() for op in ops if op.get_type_name() == "Sigmoid"]
    if not sigmoids:
        return []
    head = sigmoids[-1].rsplit("/", 1)[0] + "/"  # e.g. "/model.23/"
    skip = {"Parameter", "Result", "Constant"}
    return [
        op.get_friendly_name()
        for op in ops
        if op.get_type_name() not in skip
        and op.get_friendly_name().startswith(head)
        and not op.get_friendly_name().startswith(f"{head}cv")  # cv2/cv3/cv4: the head's convolutions
    ]


def quantize(fp32: ExportedModel, imgsz: int, frames: Sequence[Frame], out: Path) -> None:
    """NNCF post-training quantization (mixed preset) of the f32 IR, calibrated on ``frames`` at ``imgsz``."""
    try:
        nncf: Any = importlib.import_module("nncf")  # untyped; heavy import (torch), only when quantizing
    except ImportError as exc:
        raise DetectorError("INT8 export needs nncf (pip install nncf)") from exc
    nncf.set_log_level(logging.WARNING)  # not one INFO line per op left in float
    ov: Any = importlib.import_module("openvino")
    model = ov.Core().read_model(str(fp32.path))
    inputs = model_inputs(frames, imgsz, fp32.stride)
    quantized = nncf.quantize(
        model,
        nncf.Dataset(inputs),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(inputs),
        ignored_scope=nncf.IgnoredScope(names=head_decode_ops(model), validate=False),
    )
    ov.save_model(quantized, str(out), compress_to_fp16=False)


def open_ir(config: DetectorConfig, model: ExportedModel, path: Path, reason: str) -> NativeDetector:
    """A one-stream, one-thread detector on the IR at ``path`` (the f32 export or an INT8 model of it), f32 compute
    for what is not quantized; the gate and bench/precision.py run both models this way, whatever the gate said."""
    runner = OpenVinoRunner(path, 1, 1, precision="f32")
    return NativeDetector(
        config, runner, replace(model, path=path, directory=path.parent), path.name, "openvino", reason
    )


def detect_scored(
    model: ExportedModel, path: Path, imgsz: int, frames: Sequence[Frame], confidence: float, iou: float
) -> list[Scored]:
    """(boxes, confidences) of the IR at ``path`` on each frame (one frame per call, as a camera sends them)."""
    detector = open_ir(DetectorConfig(imgsz=imgsz, confidence=confidence, iou=iou), model, path, "INT8 gate")
    return [
        (np.asarray(d.xyxy, np.float64).reshape(-1, 4), np.asarray(d.confidence, np.float64).reshape(-1))
        for f in frames
        for d in detector.detect([f])
    ]


def gate(
    fp32: ExportedModel,
    int8_path: Path,
    imgsz: int,
    frames: Sequence[Frame],
    truth: Sequence[Boxes] | None,
    settings: GateSettings,
    truth_name: str = "labels",
    fit_frames: Sequence[Frame] = (),
) -> GateResult:
    """Fit INT8's confidence threshold to f32 on ``fit_frames`` (calibration frames; none: keep it), then run
    both models on the held-out ``frames`` and decide (``detectors.int8_gate``)."""
    conf, iou = settings.confidence, settings.iou
    lowest = conf * min(CONFIDENCE_SCALES)
    everything, fit = [*fit_frames, *frames], len(fit_frames)  # each model opened and compiled once
    f32_boxes = [boxes for boxes, _ in detect_scored(fp32, fp32.path, imgsz, everything, conf, iou)]
    int8_scored = detect_scored(fp32, int8_path, imgsz, everything, lowest, iou)
    scale = fit_confidence_scale(f32_boxes[:fit], int8_scored[:fit], conf) if fit else 1.0
    a = f32_boxes[fit:]
    b = [above(d, conf * scale) for d in int8_scored[fit:]]
    return run_gate(
        a,
        b,
        truth,
        margin_mae=settings.margin_mae,
        margin_recall=settings.margin_recall,
        truth_name=truth_name,
        confidence_scale=scale,
    )


def spread(frames: Sequence[Frame], count: int) -> list[Frame]:
    """At most ``count`` of ``frames``, evenly spaced."""
    step = max(1, math.ceil(len(frames) / count)) if count > 0 else len(frames) + 1
    return list(frames[::step])[:count]


def build_from_sources(
    source: Path, imgsz: int, sources: Sequence[str], frames: int, gate_frames: int, settings: GateSettings
) -> Int8Model:
    """Sample ``frames`` + ``gate_frames`` frames from ``sources``, quantize on the first, gate on the held-out."""
    calibration, held = split_frames(sample_frames(sources, frames + gate_frames), gate_frames)
    return ensure_int8(source, imgsz, calibration, held, None, settings)


def main(argv: list[str] | None = None) -> int:
    """CLI: build (or find) the INT8 model of a .pt model for cameras' files/streams; exit 1 if the gate refused."""
    ap = argparse.ArgumentParser(description="Quantize the detector to INT8 (NNCF) and gate it against f32.")
    ap.add_argument("--model", type=Path, default=None, help="the .pt model (default: the offline default model)")
    ap.add_argument("--imgsz", type=int, default=DetectorConfig().imgsz)
    ap.add_argument("--source", action="append", required=True, help="video file or stream URL (repeatable)")
    ap.add_argument("--frames", type=int, default=DEFAULT_CALIBRATION_FRAMES, help="calibration frames")
    ap.add_argument("--gate-frames", type=int, default=DEFAULT_GATE_FRAMES, help="held-out frames for the gate")
    ap.add_argument("--confidence", type=float, default=DetectorConfig().confidence)
    ap.add_argument("--margin-mae", type=float, default=DEFAULT_MARGIN_MAE)
    ap.add_argument("--margin-recall", type=float, default=DEFAULT_MARGIN_RECALL)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from detectors.model_fetch import default_model_path, ensure_default_model

    model = args.model or ensure_default_model(default_model_path().parent)
    settings = GateSettings(args.confidence, DetectorConfig().iou, args.margin_mae, args.margin_recall)
    built = build_from_sources(model, args.imgsz, args.source, args.frames, args.gate_frames, settings)
    state = "passed" if built.verdict.passed else "REFUSED (the engine keeps f32/bf16)"
    print(f"{built.path} ({'built' if built.rebuilt else 'cached'}): gate {state}: {built.verdict.summary}")
    return 0 if built.verdict.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
