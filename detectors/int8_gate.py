"""The INT8 accuracy gate: does the quantized model count people as well as the f32 one?

Both models' boxes on the same frames are scored against a reference: hand labels where there are
some (bench/gt), else the f32 model's own boxes (a user's camera has no labels; then f32 scores MAE 0,
recall 1 and INT8 must agree with it). INT8 passes when its count MAE is at most ``margin_mae`` above
f32's and its recall (IoU >= 0.5, greedy one-to-one, as ``monitor eval`` matches) at most
``margin_recall`` below (or one box, where the gate frames hold under 50 people). Pure functions of box arrays.

Quantization shifts the scores a little, mostly down, so people whose f32 score sits just above the threshold
drop under it in INT8 (at imgsz 1280, confidence 0.2 on the sample: 6 of 229 boxes). That is a shifted
operating point, not lost information: ``fit_confidence_scale`` picks, on calibration frames, the threshold
scale (1.0 down to 0.7) at which INT8 agrees best with f32, and the gate then judges INT8 at that threshold on
the held-out frames. A lower threshold that only adds boxes f32 does not have raises the count error, so the
fit cannot buy recall with false positives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from detectors.matching import IOU_THRESHOLD, greedy_match
from detectors.precision import Int8Verdict

IOU_MATCH = IOU_THRESHOLD
DEFAULT_MARGIN_MAE = 0.1
DEFAULT_MARGIN_RECALL = 0.02
CONFIDENCE_SCALES = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7)  # tried by fit_confidence_scale, unchanged first

Boxes = NDArray[np.floating]
Scored = tuple[NDArray[np.floating], NDArray[np.floating]]  # (xyxy boxes, their confidences)


@dataclass(frozen=True, slots=True)
class Score:
    """Count error and recall of one model's boxes against the reference, over the gate frames."""

    mae: float
    recall: float


def matches(pred: Boxes, truth: Boxes, threshold: float = IOU_MATCH) -> int:
    """How many truth boxes a prediction claims at IoU >= threshold (greedy by IoU, one-to-one, as ``monitor eval``)."""
    return len(greedy_match(pred, truth, threshold))


def score(pred: Sequence[Boxes], reference: Sequence[Boxes]) -> Score:
    """Mean absolute per-frame count error and recall of ``pred`` against ``reference`` (same frames)."""
    if len(pred) != len(reference) or not pred:
        raise ValueError(f"need the same, non-zero number of frames, got {len(pred)} and {len(reference)}")
    errors = [abs(len(p) - len(r)) for p, r in zip(pred, reference, strict=True)]
    total = sum(len(r) for r in reference)
    found = sum(matches(p, r) for p, r in zip(pred, reference, strict=True))
    return Score(float(np.mean(errors)), found / total if total else 1.0)


@dataclass(frozen=True, slots=True)
class GateResult:
    """The decision and the numbers behind it (stored as gate.json next to the INT8 model)."""

    passed: bool
    f32: Score
    int8: Score
    margin_mae: float
    margin_recall: float
    reference: str  # "f32 agreement" or the labels' name
    frames: int
    confidence_scale: float = 1.0  # INT8 was judged (and runs) at this times the confidence threshold

    def summary(self) -> str:
        """E.g. "MAE 0.05 vs 0.00 f32, recall 0.990 vs 1.000 (f32 agreement, 40 frames)"."""
        return (
            f"MAE {self.int8.mae:.2f} vs {self.f32.mae:.2f} f32, recall {self.int8.recall:.3f} vs "
            f"{self.f32.recall:.3f} ({self.reference}, {self.frames} frames; margins MAE +{self.margin_mae:g}, "
            f"recall -{self.margin_recall * 100:g} points)"
            + ("" if self.confidence_scale == 1.0 else f"; INT8 at {self.confidence_scale:g}x the confidence threshold")
        )

    def verdict(self) -> Int8Verdict:
        """What ``choose_cpu_precision`` needs."""
        return Int8Verdict(self.passed, self.summary(), self.confidence_scale)

    def to_json(self) -> dict[str, object]:
        """Plain data for gate.json."""
        return {
            "passed": self.passed,
            "f32": {"mae": self.f32.mae, "recall": self.f32.recall},
            "int8": {"mae": self.int8.mae, "recall": self.int8.recall},
            "margin_mae": self.margin_mae,
            "margin_recall": self.margin_recall,
            "reference": self.reference,
            "frames": self.frames,
            "confidence_scale": self.confidence_scale,
            "summary": self.summary(),
        }


def run_gate(
    f32: Sequence[Boxes],
    int8: Sequence[Boxes],
    truth: Sequence[Boxes] | None = None,
    *,
    margin_mae: float = DEFAULT_MARGIN_MAE,
    margin_recall: float = DEFAULT_MARGIN_RECALL,
    truth_name: str = "labels",
    confidence_scale: float = 1.0,
) -> GateResult:
    """Score both models against ``truth`` (None: the f32 boxes) and decide within the margins.

    ``confidence_scale``: the threshold scale INT8's boxes were kept at (recorded with the result)."""
    reference = f32 if truth is None else truth
    a, b = score(f32, reference), score(int8, reference)
    eps = 1e-9  # "at most the margin" must not fail on float rounding (0.1 + 0.0 vs 0.1)
    # one box of slack at least: with few people in the gate frames (36 boxes at imgsz 640 on the sample) a
    # single miss is -2.8 points, and one box is no evidence either way
    people = sum(len(r) for r in reference)
    recall_slack = max(margin_recall, 1.0 / people) if people else margin_recall
    passed = b.mae <= a.mae + margin_mae + eps and b.recall >= a.recall - recall_slack - eps
    name = "f32 agreement" if truth is None else truth_name
    return GateResult(passed, a, b, margin_mae, margin_recall, name, len(f32), confidence_scale)


def above(detections: Scored, threshold: float) -> Boxes:
    """The boxes scoring at least ``threshold`` (NMS keeps the same boxes whatever the threshold below theirs)."""
    boxes, confidence = detections
    return boxes[np.asarray(confidence) >= threshold]


def fit_confidence_scale(
    f32: Sequence[Boxes], int8: Sequence[Scored], confidence: float, scales: Sequence[float] = CONFIDENCE_SCALES
) -> float:
    """The scale of ``confidence`` at which INT8's boxes (found at ``confidence * min(scales)`` or lower) agree
    best with f32's on the same frames: the lowest count error, then the highest recall, then the scale
    closest to 1."""

    def badness(scale: float) -> tuple[float, float, float]:
        s = score([above(d, confidence * scale) for d in int8], f32)
        return (round(s.mae, 9), -round(s.recall, 9), abs(1.0 - scale))

    return min(scales, key=badness)
