"""Draw a MOT file's boxes on its frames for review by eye: 2x upscaled, numbered, on a labelled grid.

The grid (every 50 px of the original frame, labelled in original pixels) is how missed people's
boxes were estimated: read the corners off the grid, then check the re-rendered result.

    PYTHONPATH=. python bench/gt/tools/render.py MOT.txt [--out DIR] [--frames 1,21,...] [--crop x1,y1,x2,y2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import cv2
import numpy as np
from numpy.typing import NDArray

Row = tuple[int, float, float, float, float, int]  # id, x, y, w, h, class


def read_rows(path: Path) -> dict[int, list[Row]]:
    """MOT rows per 1-based frame (conf-0 rows are kept, drawn as class -1)."""
    out: dict[int, list[Row]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        v = [float(c) for c in line.split(",")]
        cls = int(v[7]) if len(v) >= 8 else 1
        if len(v) >= 7 and v[6] == 0:
            cls = -1
        out.setdefault(int(v[0]), []).append((int(v[1]), v[2], v[3], v[4], v[5], cls))
    return out


def render(
    image: NDArray[np.uint8], rows: list[Row], crop: tuple[int, int, int, int] | None, scale: int
) -> NDArray[np.uint8]:
    """The annotated (and optionally cropped) frame, upscaled so small, far people are easy to judge."""
    x0, y0, x1, y1 = crop if crop else (0, 0, image.shape[1], image.shape[0])
    big = cv2.resize(image[y0:y1, x0:x1], None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    for gx in range((x0 // 50 + 1) * 50, x1, 50):
        cv2.line(big, ((gx - x0) * scale, 0), ((gx - x0) * scale, big.shape[0]), (255, 255, 0), 1)
        cv2.putText(big, str(gx), ((gx - x0) * scale + 2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1)
    for gy in range((y0 // 50 + 1) * 50, y1, 50):
        cv2.line(big, (0, (gy - y0) * scale), (big.shape[1], (gy - y0) * scale), (255, 255, 0), 1)
        cv2.putText(big, str(gy), (2, (gy - y0) * scale - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1)
    colours = {1: (0, 255, 0), -1: (0, 0, 255)}
    for num, x, y, w, h, cls in rows:
        p1 = (round(scale * (x - x0)), round(scale * (y - y0)))
        p2 = (round(scale * (x + w - x0)), round(scale * (y + h - y0)))
        colour = colours.get(cls, (255, 0, 255))  # magenta: ignore classes
        cv2.rectangle(big, p1, p2, colour, 1)
        cv2.putText(big, str(num), (p1[0] + 2, p1[1] + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 2)
    return np.asarray(big, dtype=np.uint8)


def main() -> None:
    """Render the requested frames of the MOT file."""
    ap = argparse.ArgumentParser()
    ap.add_argument("mot")
    ap.add_argument("--video", default="sample_videos/square.mp4")
    ap.add_argument("--out", default="/tmp/gt_review")
    ap.add_argument("--frames", default=None, help="1-based frames (default: all in the file)")
    ap.add_argument("--crop", default=None, help="x1,y1,x2,y2 in original pixels (zoomed 4x)")
    ap.add_argument("--suffix", default="")
    args = ap.parse_args()
    rows = read_rows(Path(args.mot))
    frames = {int(f) for f in args.frames.split(",")} if args.frames else set(rows)
    crop = tuple(int(c) for c in args.crop.split(",")) if args.crop else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with av.open(args.video) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i + 1 in frames:
                img = render(frame.to_ndarray(format="bgr24"), rows.get(i + 1, []), crop, 4 if crop else 2)  # type: ignore[arg-type]
                cv2.imwrite(str(out / f"f{i:04d}{args.suffix}.png"), img)


if __name__ == "__main__":
    main()
