"""Benchmark: OpenVINO f32 vs bf16 vs INT8 (NNCF) ms/frame and people-count accuracy, vs the naive Ultralytics loop.

Not a test. For each imgsz: builds (or reuses) the gated INT8 model (``detectors.int8.ensure_int8``, calibrated on
sample-video frames that are NOT ground-truth frames, gated on the 40 ground-truth frames by agreement with f32),
then runs ``create_detector`` with ``precision`` fp32 and bf16, and the INT8 model itself (``open_ir``: also when
its gate refused it), on OpenVINO with 1 thread and 1 stream (one core per frame, one frame per call), on the 40
frames of bench/gt/square_gt.txt, scored as ``monitor eval`` scores (MAE, recall at IoU 0.5). The peer is
``YOLO(pt).predict(source=square.mp4, stream=True, vid_stride=20)`` in the same run (torch's own threads: all
cores); its counts are those of the same model on the ground-truth frames.

    PYTHONPATH=. nice -n 10 python bench/precision.py [--imgsz 960,1280] [--calib 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.machine import header
from detectors import DetectorConfig, create_detector, ensure_default_model
from detectors.base import Detector
from detectors.calibration import CALIBRATED_CONFIDENCE
from detectors.export import ExportSettings, ensure_export
from detectors.int8 import GateSettings, ensure_int8, open_ir
from detectors.precision import BF16_FLAGS, at_int8_threshold, read_cpu_info
from monitor.evaluate import decode_frames, frame_total, load_mot, score_frames, summarize

ROOT = Path(__file__).resolve().parent.parent
VIDEO = ROOT / "sample_videos" / "square.mp4"
GT = ROOT / "bench" / "gt" / "square_gt.txt"
PRECISIONS = ("fp32", "bf16", "int8")
Boxes = NDArray[np.float64]


def frames(truth_frames: set[int], calib: int) -> tuple[dict[int, NDArray[np.uint8]], list[NDArray[np.uint8]]]:
    """(ground-truth frames by 1-based number, ~``calib`` other frames spread over the video for calibration)."""
    total = frame_total(VIDEO) or max(truth_frames)
    others = [n for n in range(1, total + 1) if n not in truth_frames]
    step = max(1, len(others) // calib)
    wanted = set(others[step // 2 :: step][:calib]) | truth_frames
    decoded = [(i + 1, img) for i, _pts, img in decode_frames(VIDEO, lambda i: i + 1 in wanted) if img is not None]
    return {n: img for n, img in decoded if n in truth_frames}, [img for n, img in decoded if n not in truth_frames]


def run_ours(detector: Detector, images: dict[int, NDArray[np.uint8]]) -> tuple[float, dict[int, Boxes], str]:
    """(median ms per frame, boxes per frame, describe()) with one frame per ``detect()`` call."""
    ordered = sorted(images)
    for n in ordered[:3]:
        detector.detect([images[n]])
    ms: list[float] = []
    boxes: dict[int, Boxes] = {}
    for n in ordered:
        t0 = time.perf_counter()
        (d,) = detector.detect([images[n]])
        ms.append((time.perf_counter() - t0) * 1e3)
        boxes[n] = np.asarray(d.xyxy, np.float64).reshape(-1, 4)
    return statistics.median(ms), boxes, detector.describe()


def run_peer(imgsz: int, images: dict[int, NDArray[np.uint8]], confidence: float) -> tuple[float, dict[int, Boxes]]:
    """The naive loop, ``predict(source=square.mp4, stream=True, vid_stride=20)``: median ms between results
    over as many results as there are ground-truth frames; then the same model on the ground-truth frames for
    its counts (the loop yields 1-based frames 20, 40, ..., one off the annotated 1, 21, ...)."""
    from ultralytics.models import YOLO

    model: Any = YOLO(str(ensure_default_model(ROOT / "models")))
    kwargs = {"imgsz": imgsz, "conf": confidence, "iou": 0.5, "classes": [0], "verbose": False}
    ms: list[float] = []
    t0 = time.perf_counter()
    for i, _result in enumerate(model.predict(source=str(VIDEO), stream=True, vid_stride=20, **kwargs)):
        now = time.perf_counter()
        if i >= 1:  # the first result pays for model set-up
            ms.append((now - t0) * 1e3)
        t0 = now
        if i >= len(images):
            break
    ordered = sorted(images)
    results = model.predict([images[n] for n in ordered], stream=True, **kwargs)
    boxes = {
        n: r.boxes.xyxy.cpu().numpy().astype(np.float64).reshape(-1, 4) for n, r in zip(ordered, results, strict=True)
    }
    return statistics.median(ms), boxes


def main(argv: list[str] | None = None) -> int:
    """Print the markdown table (one row per imgsz x precision, plus the peer)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--imgsz", default="960,1280")
    ap.add_argument("--calib", type=int, default=100, help="calibration frames (not ground-truth frames)")
    ap.add_argument("--confidence", type=float, default=CALIBRATED_CONFIDENCE, help="default: calibrated cameras'")
    args = ap.parse_args(argv)
    print(header())
    truth = load_mot(GT)
    gt_images, calibration = frames(set(truth), args.calib)
    print(f"{len(gt_images)} ground-truth frames, {len(calibration)} calibration frames, load {os.getloadavg()[0]:.1f}")
    print("\n| imgsz | runtime | precision | ms/frame | vs peer | MAE | recall | INT8 gate (f32 agreement) |")
    print("|---:|---|---|---:|---:|---:|---:|---|")
    model = ensure_default_model(ROOT / "models")
    native_bf16 = any(flag in read_cpu_info().flags for flag in BF16_FLAGS)
    for imgsz in (int(s) for s in args.imgsz.split(",")):
        started = time.monotonic()
        gate = GateSettings(confidence=args.confidence)
        int8 = ensure_int8(model, imgsz, calibration, [gt_images[n] for n in sorted(gt_images)], None, gate)
        built = f"built in {time.monotonic() - started:.0f} s" if int8.rebuilt else "cached"
        peer_ms, peer_boxes = run_peer(imgsz, gt_images, args.confidence)
        peer = summarize(score_frames(peer_boxes, truth))
        print(
            f"| {imgsz} | Ultralytics .pt predict(stream=True) (peer) | torch f32 | {peer_ms:.1f} | x1.00 "
            f"| {peer.mae:.2f} | {peer.recall:.3f} | |",
            flush=True,
        )
        for precision in PRECISIONS:
            if precision == "bf16" and not native_bf16:  # OpenVINO would emulate it on f32 kernels: not a choice
                print(f"| {imgsz} | OpenVINO, 1 thread | bf16 | n/a (no native bf16) | | | | |", flush=True)
                continue
            config = DetectorConfig.model_validate(
                {"imgsz": imgsz, "confidence": args.confidence, "precision": precision, "threads": 1, "streams": 1}
            )
            # INT8 is measured even when its gate refused it (create_detector would then run bf16/f32).
            fp32 = ensure_export(model, ExportSettings("openvino"))
            if precision == "int8":  # at the threshold its gate fitted (what create_detector runs it at)
                detector: Detector = open_ir(at_int8_threshold(config, int8.verdict), fp32, int8.path, "INT8")
            else:
                detector = create_detector(config)
            ms, boxes, described = run_ours(detector, gt_images)
            s = summarize(score_frames(boxes, truth))
            note = f"{'passed' if int8.verdict.passed else 'REFUSED'}: {int8.verdict.summary}; {built}"
            print(
                f"| {imgsz} | OpenVINO, 1 thread | {precision} | {ms:.1f} | x{peer_ms / ms:.2f} | {s.mae:.2f} "
                f"| {s.recall:.3f} | {note if precision == 'int8' else ''} |",
                flush=True,
            )
            print(f"<!-- {described}; load {os.getloadavg()[0]:.1f} -->", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
