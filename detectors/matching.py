"""One-to-one matching of detected boxes to reference boxes: for accuracy scores (``monitor eval``) and the INT8
accuracy gate, which must agree on what counts as finding a person."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IOU_THRESHOLD = 0.5  # a detection finds a person at IoU >= 0.5 (the usual PASCAL/MOT criterion)


def iou_matrix(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(len(a), len(b)) IoU of xyxy boxes."""
    aa = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    bb = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if len(aa) == 0 or len(bb) == 0:
        return np.zeros((len(aa), len(bb)), dtype=np.float64)
    x1 = np.maximum(aa[:, None, 0], bb[None, :, 0])
    y1 = np.maximum(aa[:, None, 1], bb[None, :, 1])
    x2 = np.minimum(aa[:, None, 2], bb[None, :, 2])
    y2 = np.minimum(aa[:, None, 3], bb[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (aa[:, 2] - aa[:, 0]) * (aa[:, 3] - aa[:, 1])
    area_b = (bb[:, 2] - bb[:, 0]) * (bb[:, 3] - bb[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def greedy_match(pred: npt.ArrayLike, gt: npt.ArrayLike, threshold: float = IOU_THRESHOLD) -> list[tuple[int, int]]:
    """(pred index, gt index) pairs with IoU >= threshold, highest IoU first, each box used at most once."""
    iou = iou_matrix(pred, gt)
    pi, gi = np.nonzero(iou >= threshold)
    order = np.argsort(-iou[pi, gi], kind="stable")
    used_p: set[int] = set()
    used_g: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for k in order:
        p, g = int(pi[k]), int(gi[k])
        if p in used_p or g in used_g:
            continue
        used_p.add(p)
        used_g.add(g)
        pairs.append((p, g))
    return pairs
