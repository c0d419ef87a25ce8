"""Tiled detection: small, far people (40-80 px) reach the model at a size it can find.

Each frame is cut into a grid of equal, overlapping tiles (plus, optionally, the whole frame); all
crops go to the wrapped detector in one call (equal sizes batch together), boxes are shifted back
and merged:

1. a box touching an inner tile border is "cut"; it is dropped when a box from another crop that is
   not cut covers most of it (the neighbouring tile saw the person whole);
2. boxes from different crops are the same person when IoU > iou or one lies mostly inside the
   other (IoA > 0.7: a part seen by one tile, the whole by another); uncut, confident boxes win.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from detectors.base import Detector
from detectors.config import TilingConfig
from detectors.postprocess import box_ioa, box_iou
from monitor.types import Detections

CUT_MARGIN_PX = 3.0  # a box edge this close to an inner tile border was clipped by the tile
COVER_IOA = 0.6  # a cut box this much inside an uncut box from another crop is that person's fragment
SAME_IOA = 0.7  # one box this much inside another from a different crop: same person


@dataclass(frozen=True, slots=True)
class Tile:
    """A crop of the frame in pixels, and which of its borders are inside the frame (not its edge)."""

    x0: int
    y0: int
    x1: int
    y1: int
    full: bool = False

    def inner_borders(self, width: int, height: int) -> tuple[bool, bool, bool, bool]:
        """(left, top, right, bottom): True where the border cuts through the frame."""
        return self.x0 > 0, self.y0 > 0, self.x1 < width, self.y1 < height


def _spans(length: int, count: int, overlap: float) -> list[tuple[int, int]]:
    """``count`` equal spans covering ``length`` with the given overlap fraction."""
    if count == 1:
        return [(0, length)]
    size = min(length, math.ceil(length / (count - overlap * (count - 1))))
    step = (length - size) / (count - 1)
    return [(round(i * step), round(i * step) + size) for i in range(count)]


def plan_tiles(width: int, height: int, tiles: TilingConfig) -> list[Tile]:
    """The crops for one frame size: the grid, then the full frame when configured."""
    cols, rows = tiles.grid
    out = [
        Tile(x0, y0, x1, y1)
        for y0, y1 in _spans(height, rows, tiles.overlap)
        for x0, x1 in _spans(width, cols, tiles.overlap)
    ]
    if tiles.full_frame or len(out) == 1:
        out.append(Tile(0, 0, width, height, full=True))
    return out


def _shift(d: Detections, tile: Tile) -> Detections:
    if not len(d):
        return d
    xyxy = d.xyxy + np.asarray([tile.x0, tile.y0, tile.x0, tile.y0], np.float32)
    kp = None
    if d.keypoints is not None:
        kp = d.keypoints.copy()
        kp[..., 0] += tile.x0
        kp[..., 1] += tile.y0
    return Detections(xyxy.astype(np.float32), d.confidence, kp)


def _cut(xyxy: NDArray[np.float32], tile: Tile, width: int, height: int) -> NDArray[np.bool_]:
    left, top, right, bottom = tile.inner_borders(width, height)
    m = CUT_MARGIN_PX
    cut = np.zeros(len(xyxy), bool)
    if left:
        cut |= xyxy[:, 0] <= tile.x0 + m
    if top:
        cut |= xyxy[:, 1] <= tile.y0 + m
    if right:
        cut |= xyxy[:, 2] >= tile.x1 - m
    if bottom:
        cut |= xyxy[:, 3] >= tile.y1 - m
    return cut


def merge(parts: Sequence[tuple[Tile, Detections]], width: int, height: int, iou: float) -> Detections:
    """Per-crop detections (crop coordinates) -> one de-duplicated set in frame coordinates."""
    shifted = [(tile, _shift(d, tile)) for tile, d in parts]
    kept_parts = [d for _, d in shifted if len(d)]
    if not kept_parts:
        return Detections.empty()
    xyxy = np.concatenate([d.xyxy for d in kept_parts])
    conf = np.concatenate([d.confidence for d in kept_parts])
    with_kp = all(d.keypoints is not None for d in kept_parts)
    kps = np.concatenate([d.keypoints for d in kept_parts if d.keypoints is not None]) if with_kp else None
    source = np.concatenate([np.full(len(d), i) for i, (_, d) in enumerate(shifted) if len(d)])
    cut = np.concatenate([_cut(d.xyxy, tile, width, height) for tile, d in shifted if len(d)])
    other = source[:, None] != source[None, :]
    ioa = box_ioa(xyxy, xyxy)  # [i, j]: share of box i inside box j
    covered = ((ioa >= COVER_IOA) & other & ~cut[None, :]).any(axis=1)
    alive = ~(cut & covered)
    same = (box_iou(xyxy, xyxy) > iou) | (other & ((ioa > SAME_IOA) | (ioa.T > SAME_IOA)))
    keep: list[int] = []
    for i in np.lexsort((-conf, cut)):  # uncut first, then by confidence
        if alive[i] and not any(same[i, k] for k in keep):
            keep.append(int(i))
    idx = np.asarray(sorted(keep, key=lambda k: -conf[k]), dtype=np.intp)
    return Detections(xyxy[idx], conf[idx], None if kps is None else kps[idx])


class TiledDetector:
    """Wraps any ``Detector`` (every backend) to detect on overlapping tiles and merge the results."""

    def __init__(self, inner: Detector, tiles: TilingConfig, iou: float) -> None:
        """``iou`` is the detector's NMS threshold, reused to merge crops."""
        self._inner = inner
        self._tiles = tiles
        self._iou = iou

    @property
    def name(self) -> str:
        """The wrapped detector's name plus the grid."""
        cols, rows = self._tiles.grid
        return f"{self._inner.name}+tiles{cols}x{rows}"

    @property
    def inner(self) -> Detector:
        """The detector run on each crop."""
        return self._inner

    def describe(self) -> str:
        """The wrapped detector and the tiling settings."""
        t = self._tiles
        return (
            f"TiledDetector(grid={list(t.grid)}, overlap={t.overlap}, full_frame={t.full_frame}) "
            f"over {self._inner.describe()}"
        )

    def detect(self, images: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        """One merged ``Detections`` per image; all crops of all images go to the inner detector at once."""
        crops: list[NDArray[np.uint8]] = []
        plans: list[list[Tile]] = []
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"image {i} must be (H, W, 3) BGR, got shape {image.shape}")
            tiles = plan_tiles(image.shape[1], image.shape[0], self._tiles)
            plans.append(tiles)
            crops.extend(image if t.full else np.ascontiguousarray(image[t.y0 : t.y1, t.x0 : t.x1]) for t in tiles)
        results = iter(self._inner.detect(crops))
        out = []
        for image, tiles in zip(images, plans, strict=True):
            parts = [(t, next(results)) for t in tiles]
            out.append(merge(parts, image.shape[1], image.shape[0], self._iou))
        return out
