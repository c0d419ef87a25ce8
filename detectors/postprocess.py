"""NumPy pre/post-processing for bare YOLO sessions, mirroring Ultralytics so results match its predictor.

Letterbox (minimum rectangle, stride 32, grey 114 padding), xywh -> xyxy, best-class filter, greedy
NMS, and scaling boxes and pose keypoints back to the original image, as Ultralytics 8.x does them.
Doing this ourselves avoids importing torch (~570 MB) in the worker and Ultralytics' per-frame overhead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from monitor.types import Detections

PAD_VALUE = 114
MAX_DET = 300


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How one image was placed into the model input: scale per axis and padding (left, top)."""

    input_hw: tuple[int, int]  # model input (height, width)
    image_hw: tuple[int, int]  # original (height, width)
    new_hw: tuple[int, int]  # resized image (height, width) before padding
    top: int
    bottom: int
    left: int
    right: int

    @classmethod
    def plan(cls, image_hw: tuple[int, int], imgsz: int, stride: int = 32) -> Letterbox:
        """Ultralytics' ``LetterBox(imgsz, auto=True)``: scale the long side to imgsz, pad to a multiple of stride."""
        h, w = image_hw
        r = min(imgsz / h, imgsz / w)
        new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
        dw, dh = (imgsz - new_w) % stride / 2, (imgsz - new_h) % stride / 2
        top, bottom = round(dh - 0.1), round(dh + 0.1)
        left, right = round(dw - 0.1), round(dw + 0.1)
        return cls((new_h + top + bottom, new_w + left + right), (h, w), (new_h, new_w), top, bottom, left, right)

    def padded(self, image: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """The resized, grey-padded BGR image (H, W, 3) uint8: what a uint8-input model (Triton) is sent."""
        resized: NDArray[Any] = image
        if (image.shape[0], image.shape[1]) != self.new_hw:
            resized = cv2.resize(image, (self.new_hw[1], self.new_hw[0]), interpolation=cv2.INTER_LINEAR)
        out = cv2.copyMakeBorder(
            resized, self.top, self.bottom, self.left, self.right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
        )
        return np.asarray(out, np.uint8)

    def apply(self, image: NDArray[np.uint8], out: NDArray[np.float32]) -> None:
        """Write the letterboxed image as RGB CHW float 0..1 into ``out`` (3, H, W)."""
        padded = self.padded(image)
        np.multiply(padded[..., ::-1].transpose(2, 0, 1), np.float32(1 / 255), out=out, casting="unsafe")

    def to_image(self, xy: NDArray[np.float32]) -> NDArray[np.float32]:
        """Map (..., 2+) input-pixel coordinates (x, y first) back to the original image, clipped to it."""
        h, w = self.image_hw
        gain_x, gain_y = self.new_hw[1] / w, self.new_hw[0] / h
        out = xy.copy()
        out[..., 0] = np.clip((out[..., 0] - self.left) / gain_x, 0, w)
        out[..., 1] = np.clip((out[..., 1] - self.top) / gain_y, 0, h)
        return out


def preprocess(images: list[NDArray[np.uint8]], boxes: list[Letterbox]) -> NDArray[np.float32]:
    """One (N, 3, H, W) float32 batch; every plan in ``boxes`` must share the same input size."""
    ih, iw = boxes[0].input_hw
    batch = np.empty((len(images), 3, ih, iw), np.float32)
    for i, (image, box) in enumerate(zip(images, boxes, strict=True)):
        box.apply(image, batch[i])
    return batch


def nms(xyxy: NDArray[np.float32], scores: NDArray[np.float32], iou: float) -> NDArray[np.intp]:
    """Greedy NMS like ``torchvision.ops.nms``: indices kept, highest score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = xyxy[:, 0], xyxy[:, 1], xyxy[:, 2], xyxy[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = iw * ih
        overlap = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.intp)


def box_iou(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
    """(len(a), len(b)) IoU matrix of xyxy boxes."""
    inter = _intersection(a, b)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return (inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)).astype(np.float32)


def box_ioa(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
    """(len(a), len(b)) intersection over the area of each ``a`` box: how much of a lies inside b."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    ioa: NDArray[np.float32] = (_intersection(a, b) / (area_a[:, None] + 1e-9)).astype(np.float32)
    return ioa


def _intersection(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter: NDArray[np.float32] = (iw * ih).astype(np.float32)
    return inter


def decode(
    pred: NDArray[np.float32],
    box: Letterbox,
    num_classes: int,
    kpt_shape: tuple[int, int] | None,
    conf: float,
    iou: float,
    person_class: int = 0,
) -> Detections:
    """One image's raw head output (4 + nc + extra, anchors) -> person ``Detections`` in image pixels.

    Same rules as Ultralytics' ``non_max_suppression`` with ``classes=[person]``: best class per anchor,
    score > conf, that class must be the person class, NMS at ``iou``, at most 300 kept.
    """
    scores_all = pred[4 : 4 + num_classes]
    if num_classes == 1:
        cls_conf = scores_all[0]
        candidates = np.flatnonzero(cls_conf > conf)
    else:
        best = scores_all.argmax(0)
        cls_conf = scores_all.max(0)
        candidates = np.flatnonzero((cls_conf > conf) & (best == person_class))
    if candidates.size == 0:
        return Detections.empty()
    rows = pred[:, candidates].T  # (n, 4 + nc + extra)
    cx, cy, bw, bh = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1).astype(np.float32)
    scores = cls_conf[candidates].astype(np.float32)
    keep = nms(xyxy, scores, iou)[:MAX_DET]
    boxes = box.to_image(xyxy[keep].reshape(-1, 2, 2)).reshape(-1, 4)
    keypoints = None
    if kpt_shape is not None:
        kpts = rows[keep, 4 + num_classes :].reshape(len(keep), *kpt_shape).astype(np.float32)
        keypoints = box.to_image(kpts)
    return Detections(boxes.astype(np.float32), scores[keep], keypoints)
