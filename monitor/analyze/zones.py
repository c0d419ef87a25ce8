"""People per zone, counted by where they stand (the foot point) inside a polygon."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from monitor.types import Detections, ZoneCount

Polygon = npt.NDArray[np.float32]  # (K, 2) pixel coordinates


def to_pixels(points: Sequence[tuple[float, float]], size: tuple[int, int], relative: bool) -> Polygon:
    """Zone corners in pixels of an image of ``size`` = (width, height)."""
    poly = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    if relative:
        poly = poly * np.asarray(size, dtype=np.float32)
    return poly


def points_in_polygon(points: npt.NDArray[np.float32], polygon: Polygon) -> npt.NDArray[np.bool_]:
    """(N,) mask of points inside the polygon (even-odd ray casting, vectorised over points)."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    x = points[:, 0:1]
    y = points[:, 1:2]
    x1, y1 = polygon[:, 0], polygon[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    straddles = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    crossings = straddles & (x < x_cross)
    return np.asarray(crossings.sum(axis=1) % 2 == 1)


def count_zones(detections: Detections, zones: Mapping[str, Polygon]) -> dict[str, ZoneCount]:
    """How many people stand in each zone, and which ones."""
    feet = detections.foot_points()
    out: dict[str, ZoneCount] = {}
    for name, polygon in zones.items():
        inside = np.flatnonzero(points_in_polygon(feet, polygon))
        out[name] = ZoneCount(name, len(inside), tuple(int(i) for i in inside))
    return out
