"""Candidate boxes for hand annotation: a generous detector pass, rendered numbered for review.

The detector output is only a starting point (it is what is being evaluated, so the ground truth
must not simply be it): every frame is then checked by eye and corrected in ``corrections.py``.

    PYTHONPATH=. python bench/gt/tools/candidates.py [--every 20] [--out /tmp/gt_review]

Writes ``candidates.txt`` (MOT rows, frame = decode index + 1, id = candidate number within the
frame) into ``--out``; ``render.py`` draws them for review.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray

from detectors import DetectorConfig, create_detector


def _nms(boxes: NDArray[np.float32], scores: NDArray[np.float32], iou: float) -> list[int]:
    """Greedy NMS over the union of several passes, so one person gives one candidate."""
    order = list(np.argsort(-scores))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        rest = []
        for j in order:
            xx1 = max(boxes[i, 0], boxes[j, 0])
            yy1 = max(boxes[i, 1], boxes[j, 1])
            xx2 = min(boxes[i, 2], boxes[j, 2])
            yy2 = min(boxes[i, 3], boxes[j, 3])
            inter = max(0.0, xx2 - xx1) * max(0.0, yy2 - yy1)
            a = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
            b = (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1])
            if inter / (a + b - inter + 1e-9) < iou:
                rest.append(j)
        order = rest
    return keep


def main() -> None:
    """Decode, detect at two generous settings, merge, write the candidates."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--video", default="sample_videos/square.mp4")
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--out", default="/tmp/gt_review")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames: list[tuple[int, NDArray[np.uint8]]] = []
    with av.open(args.video) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % args.every == 0:
                frames.append((i, frame.to_ndarray(format="bgr24")))
    passes = [
        DetectorConfig(imgsz=1280, confidence=0.15, iou=0.45),
        DetectorConfig(imgsz=1600, confidence=0.2, iou=0.45),
    ]
    per_frame: dict[int, list[tuple[NDArray[np.float32], NDArray[np.float32]]]] = {i: [] for i, _ in frames}
    for cfg in passes:
        det = create_detector(cfg)
        for i, img in frames:
            d = det.detect([img])[0]
            per_frame[i].append((d.xyxy, d.confidence))
    lines: list[str] = []
    for i, _img in frames:
        boxes = np.concatenate([b for b, _ in per_frame[i]]) if per_frame[i] else np.zeros((0, 4), np.float32)
        scores = np.concatenate([s for _, s in per_frame[i]]) if per_frame[i] else np.zeros((0,), np.float32)
        keep = sorted(_nms(boxes, scores, 0.5), key=lambda k: float(boxes[k, 0]))
        for num, k in enumerate(keep, start=1):
            x1, y1, x2, y2 = (float(v) for v in boxes[k])
            lines.append(f"{i + 1},{num},{x1:.1f},{y1:.1f},{x2 - x1:.1f},{y2 - y1:.1f},{scores[k]:.3f},1,1")
    (out / "candidates.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(frames)} frames, {len(lines)} candidates -> {out}")


if __name__ == "__main__":
    main()
