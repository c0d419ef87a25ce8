"""Run ``monitor eval``'s scoring over a grid of detector settings and print bench/ACCURACY.md's table rows.

Same code path as ``monitor eval`` (``detect_frames`` + ``score_frames``), one detector per
setting, each scored twice from the same detections: all annotated people, and people >= 50 px
tall (the issue's 50-150 px target; smaller ones become ignore regions).

    PYTHONPATH=. python bench/gt/tools/accuracy_grid.py 'imgsz=640' 'imgsz=1280;confidence=0.25' \
        'imgsz=640;tiles={grid: [2, 2]}'
"""

from __future__ import annotations

import os
import sys
import time

import yaml

from detectors import DetectorConfig, create_detector
from monitor.evaluate import detect_frames, load_mot, score_frames, summarize

VIDEO = "sample_videos/square.mp4"
GT = "bench/gt/square_gt.txt"


def main() -> None:
    """One markdown row per setting given on the command line (``key=value`` pairs joined by ";", YAML values)."""
    truth = load_mot(GT)
    frames = sorted(truth)
    print("| setting | MAE | RMSE | bias | P | R | MAE >=50px | bias >=50px | P/R >=50px | ms/frame | load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for spec in sys.argv[1:]:
        overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in spec.split(";"))}
        detector = create_detector(DetectorConfig.model_validate(overrides))
        started = time.perf_counter()
        boxes, timing = detect_frames(detector, VIDEO, frames)
        wall = time.perf_counter() - started
        a = summarize(score_frames(boxes, truth))
        b = summarize(score_frames(boxes, truth, min_height=50))
        print(
            f"| `{spec}` | {a.mae:.2f} | {a.rmse:.2f} | {a.bias:+.2f} | {a.precision:.3f} | {a.recall:.3f} "
            f"| {b.mae:.2f} | {b.bias:+.2f} | {b.precision:.3f}/{b.recall:.3f} | {timing.mean_ms:.0f} "
            f"| {os.getloadavg()[0]:.1f} |",
            flush=True,
        )
        print(f"<!-- {detector.describe()}; {len(frames)} frames in {wall:.1f} s -->", flush=True)


if __name__ == "__main__":
    main()
