"""Recall of people by their height *at the model's input* (scaled height = box height x imgsz / frame long side).

Derives ``detectors.calibration.MIN_HEIGHT_PX``: the nano model's recall as a function of how tall a person is
after the frame is resized to imgsz, pooled over plain imgsz 640/960/1280/1600 at confidence 0.25 on the 40
annotated frames of the sample (same ``detect_frames`` + ``greedy_match`` as ``monitor eval``).

    PYTHONPATH=. python bench/gt/tools/min_height.py [BIN_PX]
"""

from __future__ import annotations

import sys

import numpy as np

from detectors import DetectorConfig, create_detector
from detectors.matching import greedy_match
from monitor.evaluate import detect_frames, load_mot

VIDEO = "sample_videos/square.mp4"
GT = "bench/gt/square_gt.txt"
SIZES = (640, 960, 1280, 1600)
LONG_SIDE = 768  # the sample's frame is 768x576


def main() -> None:
    """Print found/total per scaled-height bin, per imgsz and pooled."""
    width = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    truth = load_mot(GT)
    frames = sorted(truth)
    rows: list[tuple[int, float, bool]] = []  # (imgsz, scaled height, found)
    for imgsz in SIZES:
        detector = create_detector(DetectorConfig(imgsz=imgsz, confidence=0.25))
        boxes, _ = detect_frames(detector, VIDEO, frames)
        for frame in frames:
            people = truth[frame].people
            found = {g for _, g in greedy_match(boxes[frame], people)}
            for g, box in enumerate(people):
                rows.append((imgsz, float(box[3] - box[1]) * imgsz / LONG_SIDE, g in found))
    scaled = np.asarray([r[1] for r in rows])
    hit = np.asarray([r[2] for r in rows])
    size = np.asarray([r[0] for r in rows])
    print(f"| scaled height (px at the model input) | found / people (recall) | by imgsz {SIZES} |")
    print("|---|---:|---|")
    for lo in range(0, int(scaled.max()) + width, width):
        sel = (scaled >= lo) & (scaled < lo + width)
        if not sel.any():
            continue
        per = " ".join(f"{int(hit[sel & (size == s)].sum())}/{int((sel & (size == s)).sum())}" for s in SIZES)
        print(f"| {lo}-{lo + width} | {int(hit[sel].sum())}/{int(sel.sum())} ({hit[sel].mean():.2f}) | {per} |")
    for floor in range(70, 131, 5):
        sel = scaled >= floor
        print(f"at or above {floor} px: recall {hit[sel].mean():.3f} ({int(hit[sel].sum())}/{int(sel.sum())})")


if __name__ == "__main__":
    main()
