"""Benchmark: detector ms/frame per backend x imgsz x tiling on sample-video frames, vs Ultralytics' own loop.

Not a test. Frames: every 10th frame of sample_videos/square.mp4 (768x576), decoded up front so only
the detector is timed; one frame per ``detect()`` call (what a single camera sees), medians after a
warm-up. The reference is the plain Ultralytics ``.pt`` loop people write,
``YOLO(pt).predict(source=square.mp4, stream=True, vid_stride=10)``, timed per yielded result (it
includes its own decoding, ~1-2 ms of the total at this size). Also prints mean people per frame so
the cost of finding more small people is visible.

    PYTHONPATH=. python bench/detector_speed.py [--quick] [--backends torch,onnxruntime,openvino] [--imgsz 640,960]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
from numpy.typing import NDArray

from bench.machine import header
from detectors import DetectorConfig, create_detector, ensure_default_model

ROOT = Path(__file__).resolve().parent.parent
VIDEO = ROOT / "sample_videos" / "square.mp4"


def load_frames(step: int, limit: int) -> list[NDArray[np.uint8]]:
    """Every ``step``-th frame of the sample video as BGR, at most ``limit``."""
    frames: list[NDArray[np.uint8]] = []
    with av.open(str(VIDEO)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % step == 0:
                frames.append(np.asarray(frame.to_ndarray(format="bgr24"), np.uint8))
                if len(frames) >= limit:
                    break
    return frames


def time_detector(config: DetectorConfig, frames: list[NDArray[np.uint8]]) -> tuple[float, float, str]:
    """(median ms per frame, mean people per frame, describe()) for one config."""
    det = create_detector(config)
    for frame in frames[:3]:
        det.detect([frame])
    ms: list[float] = []
    people: list[int] = []
    for frame in frames:
        t0 = time.perf_counter()
        (d,) = det.detect([frame])
        ms.append((time.perf_counter() - t0) * 1e3)
        people.append(len(d))
    return statistics.median(ms), float(np.mean(people)), det.describe()


def time_ultralytics_loop(imgsz: int, step: int, limit: int) -> tuple[float, float]:
    """The naive reference: predict(stream=True) over the file, ms between yielded results (median)."""
    from ultralytics.models import YOLO

    model: Any = YOLO(str(ensure_default_model(ROOT / "models")))
    ms: list[float] = []
    people: list[int] = []
    stream = model.predict(
        source=str(VIDEO), stream=True, vid_stride=step, imgsz=imgsz, conf=0.35, iou=0.5, classes=[0], verbose=False
    )
    t0 = time.perf_counter()
    for i, r in enumerate(stream):
        now = time.perf_counter()
        if i >= 3:
            ms.append((now - t0) * 1e3)
            people.append(len(r.boxes))
        t0 = now
        if i >= limit + 2:
            break
    return statistics.median(ms), float(np.mean(people))


def main(argv: list[str] | None = None) -> int:
    """CLI: print one markdown table row per configuration."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 frames, 640 only")
    ap.add_argument("--backends", default="torch,onnxruntime,openvino")
    ap.add_argument("--imgsz", default="640,960,1280")
    ap.add_argument("--tiles", default="none,2x2,2x2-nofull", help="none, CxR (with full frame), CxR-nofull")
    ap.add_argument("--threads", type=int, default=None, help="inference threads (default: half the cores)")
    ap.add_argument("--frames", type=int, default=40)
    args = ap.parse_args(argv)
    if args.quick:
        args.imgsz, args.frames, args.tiles = "640", 10, "none,2x2"
    frames = load_frames(10, args.frames)
    print(header())
    print(f"{len(frames)} frames of {VIDEO.name} ({frames[0].shape[1]}x{frames[0].shape[0]}), one per call\n")
    print("| backend | imgsz | tiles | ms/frame (median) | people/frame |")
    print("|---|---:|---|---:|---:|")
    for size in (int(s) for s in args.imgsz.split(",")):
        ms, people = time_ultralytics_loop(size, 10, args.frames)
        print(f"| ultralytics .pt predict(stream=True) loop | {size} | none | {ms:.1f} | {people:.2f} |", flush=True)
        for tiles in args.tiles.split(","):
            if tiles != "none" and size != 640:
                continue  # tiling is the way to stay at 640; larger sizes with tiles are not interesting here
            tiling: dict[str, Any] | None = None
            if tiles != "none":
                grid = tiles.split("-")[0]
                tiling = {"grid": [int(v) for v in grid.split("x")], "full_frame": not tiles.endswith("nofull")}
            for backend in args.backends.split(","):
                cfg = DetectorConfig.model_validate(
                    {"imgsz": size, "backend": backend, "tiles": tiling, "threads": args.threads}
                )
                ms, people, _ = time_detector(cfg, frames)
                print(f"| {backend} | {size} | {tiles} | {ms:.1f} | {people:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
