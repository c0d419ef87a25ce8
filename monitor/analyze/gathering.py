"""Groups of people standing together, judged in body heights so one threshold works near and far.

Two people are *together* when the image distance between their foot points is below
``k`` times their mean body height. A person's image height shrinks with distance from the camera
exactly as the spacing between people does, so the ratio is (to first order) independent of depth,
and the same ``k`` finds a tight group of 40 px figures at the back of a square and one of 300 px
figures in front of the camera. Groups are the connected components of that relation.

Body height: the box height, except when pose keypoints are present and reliable (a visible eye or
nose and a visible ankle): then the head-to-ankle span divided by ``EYE_TO_ANKLE_FRACTION``
(eye height minus ankle height is about 0.89 of stature in standard anthropometric tables). That
span ignores raised arms and carried objects that inflate the box; when it disagrees with the box
by more than ``KEYPOINT_BOX_RANGE`` (a mis-fitted skeleton, a sitting person) the box wins.
Everything is computed in float64 and depends only on ratios, so scaling or translating the image
leaves the groups unchanged (the property tests check this).

Known limitation: image distances are compared isotropically, but ground-plane spacing along the
viewing direction is foreshortened; people one behind the other are linked slightly more readily
than people side by side. ``max_height_ratio`` (people at the same depth look about the same
height) rejects links between a near and a far person that merely overlap in the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitor.analyze.zones import Polygon, points_in_polygon
from monitor.types import Detections

# COCO-17 keypoint indices (yolo11n-pose).
NOSE, LEFT_EYE, RIGHT_EYE = 0, 1, 2
LEFT_ANKLE, RIGHT_ANKLE = 15, 16
EYE_TO_ANKLE_FRACTION = 0.89
KEYPOINT_BOX_RANGE = (0.6, 1.4)  # accepted keypoint height / box height
MIN_KEYPOINT_VISIBILITY = 0.5

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Group:
    """People standing together.

    ``members``: indices into the frame's Detections (ascending); ``centroid``: mean foot point;
    ``polygon``: convex hull of the members' box bottom edges (both bottom corners of each box),
    vertices in order, (K, 2) float32; only 2 points when all box bottoms lie on one line;
    ``spread_in_body_heights``: the largest foot-to-foot distance in the group divided by the
    members' mean body height (0 for one person).
    """

    members: tuple[int, ...]
    size: int
    centroid: tuple[float, float]
    polygon: npt.NDArray[np.float32]
    spread_in_body_heights: float


def body_heights(detections: Detections) -> F64:
    """(N,) body height per person in pixels: keypoint span when reliable, else box height."""
    box = detections.heights().astype(np.float64)
    kp = detections.keypoints
    if kp is None or len(detections) == 0 or kp.shape[1] <= RIGHT_ANKLE:
        return box
    return np.where(_keypoint_ok(kp, box), _keypoint_span(kp) / EYE_TO_ANKLE_FRACTION, box)


def _keypoint_span(kp: npt.NDArray[np.float32]) -> F64:
    """Distance from the mean visible head point (eyes, nose) to the mean visible ankle (NaN if none)."""
    head = _mean_visible(kp, [NOSE, LEFT_EYE, RIGHT_EYE])
    ankle = _mean_visible(kp, [LEFT_ANKLE, RIGHT_ANKLE])
    return np.asarray(np.hypot(*(ankle - head).T), dtype=np.float64)


def _mean_visible(kp: npt.NDArray[np.float32], idx: list[int]) -> F64:
    pts = kp[:, idx, :2].astype(np.float64)
    vis = (kp[:, idx, 2] >= MIN_KEYPOINT_VISIBILITY)[..., None]
    n = vis.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((pts * vis).sum(axis=1) / n, dtype=np.float64)  # NaN rows where nothing is visible


def _keypoint_ok(kp: npt.NDArray[np.float32], box: F64) -> npt.NDArray[np.bool_]:
    est = _keypoint_span(kp) / EYE_TO_ANKLE_FRACTION
    lo, hi = KEYPOINT_BOX_RANGE
    with np.errstate(invalid="ignore"):
        return np.asarray(np.isfinite(est) & (est >= lo * box) & (est <= hi * box))


def together(detections: Detections, k: float, max_height_ratio: float | None = None) -> npt.NDArray[np.bool_]:
    """(N, N) symmetric relation "stands within k mean body heights of", diagonal False."""
    feet = detections.foot_points().astype(np.float64)
    h = body_heights(detections)
    dist = np.hypot(*(feet[:, None, :] - feet[None, :, :]).transpose(2, 0, 1))
    rel = dist < k * (h[:, None] + h[None, :]) / 2
    if max_height_ratio is not None:
        big, small = np.maximum(h[:, None], h[None, :]), np.minimum(h[:, None], h[None, :])
        rel &= big <= max_height_ratio * small
    np.fill_diagonal(rel, False)
    return np.asarray(rel)


def components(relation: npt.NDArray[np.bool_]) -> list[list[int]]:
    """Connected components of a symmetric relation (union-find), each sorted, ordered by first member."""
    parent = list(range(len(relation)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(relation, 1)), strict=True):
        ri, rj = root(int(i)), root(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    out: dict[int, list[int]] = {}
    for i in range(len(relation)):
        out.setdefault(root(i), []).append(i)
    return list(out.values())


def find_groups(
    detections: Detections,
    k: float = 1.0,
    min_size: int = 2,
    mask: npt.NDArray[np.bool_] | None = None,
    zone: Polygon | None = None,
    max_height_ratio: float | None = None,
) -> list[Group]:
    """Groups of at least ``min_size`` people, largest first (ties: lowest member index first).

    ``mask`` (N,) keeps only the selected detections (e.g. from a DetectionFilter); ``zone`` keeps
    only people whose feet are inside the polygon. Excluded people are left out *before* grouping,
    so someone outside the zone never chains two groups inside it together. Member indices always
    refer to the full ``detections``.
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    keep = np.ones(len(detections), dtype=bool) if mask is None else np.asarray(mask, dtype=bool).copy()
    if zone is not None:
        keep &= points_in_polygon(detections.foot_points(), zone)
    index = np.flatnonzero(keep)
    subset = detections[index]
    groups = [
        _group(detections, tuple(int(index[i]) for i in comp))
        for comp in components(together(subset, k, max_height_ratio))
        if len(comp) >= min_size
    ]
    return sorted(groups, key=lambda g: (-g.size, g.members))


def largest_group_size(groups: list[Group]) -> int:
    """The count a gathering rule compares with its threshold (0 when there is no group)."""
    return max((g.size for g in groups), default=0)


def _group(detections: Detections, members: tuple[int, ...]) -> Group:
    sel = detections[np.asarray(members, dtype=np.intp)]
    feet = sel.foot_points().astype(np.float64)
    centroid = feet.mean(axis=0)
    heights = body_heights(sel)
    mean_h = float(heights.mean())
    diameter = float(np.hypot(*(feet[:, None, :] - feet[None, :, :]).transpose(2, 0, 1)).max())
    spread = diameter / mean_h if mean_h > 0 else float("inf") if diameter > 0 else 0.0
    edges = np.concatenate([sel.xyxy[:, [0, 3]], sel.xyxy[:, [2, 3]]]).astype(np.float64)
    return Group(
        members=members,
        size=len(members),
        centroid=(float(centroid[0]), float(centroid[1])),
        polygon=convex_hull(edges).astype(np.float32),
        spread_in_body_heights=spread,
    )


def convex_hull(points: F64) -> F64:
    """Convex hull (Andrew's monotone chain) without repeated or collinear points; (K, 2)."""
    pts = np.unique(points, axis=0)  # sorted by x, then y
    if len(pts) <= 2:
        return pts

    def half(seq: F64) -> list[F64]:
        chain: list[F64] = []
        for p in seq:
            while len(chain) >= 2 and _cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        return chain

    lower, upper = half(pts), half(pts[::-1])
    return np.asarray(lower[:-1] + upper[:-1])


def _cross(o: F64, a: F64, b: F64) -> float:
    return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))
