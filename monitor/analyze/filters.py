"""Per-zone detection filters: too small, too unsure, or standing on a poster/statue/reflection.

False alarms make staff mute the system; the usual culprits are fixed (a billboard figure, a
statue, a shop-window reflection) or marginal (tiny, low-confidence boxes). These filters drop
them before counting, per zone, so a distant zone can accept small people while a near one does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from monitor.analyze.zones import Polygon, points_in_polygon
from monitor.types import Detections, ZoneCount

Anchor = Literal["foot", "center"]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class DetectionFilter:
    """What a zone accepts. ``exclude`` polygons are in pixels; ``anchor`` is the point tested against them.

    ``anchor="foot"`` (bottom centre) suits statues and posters at ground level; ``"center"`` suits
    reflections and posters high on a wall, whose boxes' feet may lie outside the mask.
    """

    min_height_px: float | None = None
    min_confidence: float | None = None
    exclude: tuple[Polygon, ...] = ()
    anchor: Anchor = "foot"

    def keep(self, detections: Detections) -> BoolArray:
        """(N,) True for detections the zone accepts."""
        keep = np.ones(len(detections), dtype=bool)
        if len(detections) == 0:
            return keep
        if self.min_height_px is not None:
            keep &= detections.heights() >= self.min_height_px
        if self.min_confidence is not None:
            keep &= detections.confidence >= self.min_confidence
        points = anchor_points(detections, self.anchor)
        for polygon in self.exclude:
            keep &= ~points_in_polygon(points, polygon)
        return keep

    def apply(self, detections: Detections) -> Detections:
        """Only the detections the zone accepts (indices change: use ``keep`` to keep the originals)."""
        return detections[self.keep(detections)]


def anchor_points(detections: Detections, anchor: Anchor) -> npt.NDArray[np.float32]:
    """(N, 2) the point of each box that a mask is tested against."""
    if anchor == "foot":
        return detections.foot_points()
    xyxy = detections.xyxy
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2], axis=1).astype(np.float32)


def count_zones_filtered(
    detections: Detections,
    zones: Mapping[str, Polygon],
    filters: Mapping[str, DetectionFilter],
    default: DetectionFilter | None = None,
) -> dict[str, ZoneCount]:
    """Like ``zones.count_zones`` (feet inside the polygon), with each zone's filter applied first.

    ``members`` are indices into the unfiltered ``detections``; zones without an entry in
    ``filters`` use ``default`` (no filtering when None).
    """
    feet = detections.foot_points()
    out: dict[str, ZoneCount] = {}
    for name, polygon in zones.items():
        flt = filters.get(name, default)
        accepted = flt.keep(detections) if flt is not None else np.ones(len(detections), dtype=bool)
        inside = np.flatnonzero(accepted & points_in_polygon(feet, polygon))
        out[name] = ZoneCount(name, len(inside), tuple(int(i) for i in inside))
    return out
