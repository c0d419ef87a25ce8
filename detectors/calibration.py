"""Pick the cheapest detector setting that still finds a camera's people, from their measured heights.

Pure: heights in, a choice and its evidence out (sampling frames, running the reference model and storing the
result happen in ``monitor.runtime.calibration``).

Why heights decide: the nano model finds a person by how tall they are *at the model's input*, whatever the
frame size. ``bench/gt/tools/min_height.py`` pools plain imgsz 640/960/1280/1600 (confidence 0.25) on the 40
annotated frames of the sample (248 people x 4 sizes): under 80 px at the input nobody is found, 80-90 px one
in five, 90-100 px half (54 %), 100-105 px 81 %, 105 px and up 95-100 %; of everybody at or above 100 px, 98 %
(at or above 90 px: 93 %). The four sizes agree (it is the height at the input, not the size, that counts).
So ``MIN_HEIGHT_PX`` = 100 for yolo11n: a setting is good enough when the small people (the 5th percentile of
the measured heights, so one odd box does not decide) reach 100 px after the frame is scaled to imgsz (or to a
tile's size). Other models get the same figure until measured (larger models find smaller people).

Confidence: a calibrated camera uses 0.2, not the 0.35 default. On the sample (bench/ACCURACY.md) lowering it
adds recall at every size with no false positive (imgsz 1280: recall 0.867 at 0.35, 0.907 at 0.25, 0.923 at 0.2;
count MAE on all people 0.82, 0.57, 0.475; the reviewed candidate pass at 0.15 found no box on anything but a
person). 0.2 rather than 0.15 keeps a margin for cameras with posters or statues, which use zone exclusion masks
and ``min_confidence`` filters rather than a higher global threshold. The reference pass that measures heights
stays at 0.25: faint boxes would lower the small-person percentile and buy larger, costlier sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from detectors.config import DetectorConfig, TilingConfig
from detectors.tiling import plan_tiles

MIN_HEIGHT_PX = 100.0  # yolo11n(-pose): recall >= ~0.9 from here up (module docstring, bench/ACCURACY.md)
PERCENTILE = 5.0  # the "smallest person" is this percentile of the measured heights
MIN_PEOPLE = 5  # fewer person boxes than this in the window: no decision, keep the default, retry later
CALIBRATED_CONFIDENCE = 0.2
REFERENCE_CONFIDENCE = 0.25  # the heights pass (module docstring)
REFERENCE_IMGSZ = 1600  # the reference pass: the most accurate plain size measured (MAE 0.30 on the sample)
REFERENCE_TILES_ABOVE = 1000  # frames with a longer side than this are measured with 2x2 tiles at 1600 too
EDGE_PX = 2.0  # a box this close to the top or bottom edge is a person cut off: its height is not theirs
STRIDE = 32
METHOD = "p5>=100px conf0.2 v3"  # stored with each result: a changed rule (or candidate set) recalibrates


@dataclass(frozen=True, slots=True)
class Candidate:
    """One setting the calibration may choose: a plain inference size, or a tile grid at a size."""

    imgsz: int
    grid: tuple[int, int] | None = None  # tiles [cols, rows] (overlap 0.2, plus the full frame)

    @property
    def label(self) -> str:
        """How the setting reads in logs and on the page."""
        return f"imgsz {self.imgsz}" if self.grid is None else f"tiles {self.grid[0]}x{self.grid[1]} at {self.imgsz}"

    def tiling(self) -> TilingConfig | None:
        """The tiling config this candidate runs with."""
        return None if self.grid is None else TilingConfig(grid=self.grid)

    def crops(self, frame_size: tuple[int, int]) -> list[tuple[int, int]]:
        """(width, height) of every image the model sees per frame."""
        width, height = frame_size
        tiles = self.tiling()
        if tiles is None:
            return [(width, height)]
        return [(t.x1 - t.x0, t.y1 - t.y0) for t in plan_tiles(width, height, tiles)]

    def scale(self, frame_size: tuple[int, int]) -> float:
        """Model-input pixels per frame pixel for the smallest-scaled crop that small people are found in.

        Tiles: the grid tiles (the extra full-frame pass is for people too big for a tile).
        """
        crops = self.crops(frame_size)
        grid = crops[:-1] if self.grid is not None and len(crops) > 1 else crops
        return min(self.imgsz / max(w, h) for w, h in grid)

    def cost(self, frame_size: tuple[int, int]) -> float:
        """Model-input pixels per frame (letterboxed to the stride): what inference time grows with.

        bench/ACCURACY.md's measured ms/frame follow it: 640 26 ms, 960 63, 1280 102, 1600 164; tiles 2x2
        at 640 (5 crops) 117, at 960 269.
        """
        total = 0.0
        for w, h in self.crops(frame_size):
            s = self.imgsz / max(w, h)
            total += _ceil_stride(w * s) * _ceil_stride(h * s)
        return total


def _ceil_stride(x: float) -> int:
    return max(STRIDE, math.ceil(x / STRIDE - 1e-9) * STRIDE)


# Plain sizes, and 2x2 tiles for frames where even imgsz 1920 leaves people too small. At the same scale tiles
# always cost more (they overlap, and add the full frame), so the cost order lets them win only when no plain
# size is enough (large frames, far people). Plain sizes go past 1600 for small frames: on a 640x360 sub-stream
# the far people need x2.7, and plain 1760 costs two thirds of 2x2 tiles at 960 for the same scale
# (bench/RESULTS.md, "accurate default on sub-streams": 0.25 vs 0.38 CPU-s per camera-second, bf16); 1920 keeps
# a 1080p frame at its own size, beyond which the tiles' smaller inputs keep memory bounded.
CANDIDATES: tuple[Candidate, ...] = (
    Candidate(640),
    Candidate(800),
    Candidate(960),
    Candidate(1120),
    Candidate(1280),
    Candidate(1440),
    Candidate(1600),
    Candidate(1760),
    Candidate(1920),
    Candidate(960, (2, 2)),
    Candidate(1280, (2, 2)),
    Candidate(1600, (2, 2)),
)


def reference_candidate(frame_size: tuple[int, int]) -> Candidate:
    """The high-accuracy setting heights are measured with: imgsz 1600, or 2x2 tiles at 1600 on large frames."""
    return Candidate(REFERENCE_IMGSZ, (2, 2) if max(frame_size) > REFERENCE_TILES_ABOVE else None)


def person_heights(xyxy: npt.ArrayLike, frame_size: tuple[int, int], edge_px: float = EDGE_PX) -> list[float]:
    """Heights of the boxes, without those cut by the top or bottom of the frame (a half person is not small)."""
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    whole = (boxes[:, 1] > edge_px) & (boxes[:, 3] < frame_size[1] - edge_px)
    return [float(h) for h in boxes[whole, 3] - boxes[whole, 1]]


@dataclass(frozen=True, slots=True)
class Option:
    """How one candidate would do: the smallest person's height at its scale, and its relative cost."""

    label: str
    scaled_px: float
    cost: float  # relative to imgsz 640 plain on this frame
    enough: bool


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the choice rests on (stored and shown with it)."""

    people: int  # person boxes measured (whole ones)
    frames: int
    heights_px: dict[str, float]  # p5/p50/p95/min/max of the measured heights, frame pixels
    basis_px: float | None  # the PERCENTILE height: the "smallest person"
    min_height_px: float  # the model's minimum at its input
    scaled_px: float | None  # basis_px at the chosen setting
    options: list[Option] = field(default_factory=list)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Choice:
    """The detector setting a calibration settles on."""

    imgsz: int
    confidence: float
    grid: tuple[int, int] | None = None

    @property
    def label(self) -> str:
        """E.g. ``imgsz 1280, conf 0.2``."""
        return f"{Candidate(self.imgsz, self.grid).label}, conf {self.confidence:g}"

    def apply(self, settings: DetectorConfig) -> DetectorConfig:
        """``settings`` with this size, tiling and confidence (everything else kept)."""
        tiles = None if self.grid is None else TilingConfig(grid=self.grid)
        return settings.model_copy(update={"imgsz": self.imgsz, "confidence": self.confidence, "tiles": tiles})


def choose_setting(
    heights_px: Sequence[float],
    frame_size: tuple[int, int],
    candidates: Sequence[Candidate] = CANDIDATES,
    min_height_px: float = MIN_HEIGHT_PX,
    frames: int = 0,
    percentile: float = PERCENTILE,
    min_people: int = MIN_PEOPLE,
) -> tuple[Choice | None, Evidence]:
    """The cheapest candidate at which the ``percentile`` height reaches ``min_height_px``, and why.

    ``None`` when fewer than ``min_people`` heights were measured (keep the current setting and retry later).
    When no candidate is enough, the one that enlarges the small people most (most accurate, however costly).
    """
    if not candidates:
        raise ValueError("no candidate settings")
    heights = np.asarray(heights_px, dtype=np.float64)
    stats = _stats(heights)
    if len(heights) < min_people:
        seen = "nobody" if not len(heights) else f"only {len(heights)} people"
        reason = f"{seen} seen in {frames} frame(s): keeping the default, trying again later"
        return None, Evidence(len(heights), frames, stats, None, min_height_px, None, [], reason)
    basis = float(np.percentile(heights, percentile))
    base_cost = Candidate(640).cost(frame_size)
    ranked = sorted(candidates, key=lambda c: (c.cost(frame_size), -c.scale(frame_size)))
    options = [
        Option(c.label, round(basis * c.scale(frame_size), 1), round(c.cost(frame_size) / base_cost, 2),
               basis * c.scale(frame_size) >= min_height_px)
        for c in ranked
    ]  # fmt: skip
    chosen = next((c for c, o in zip(ranked, options, strict=True) if o.enough), None)
    if chosen is not None:
        reason = (
            f"{percentile:g}th-percentile person {basis:.0f} px -> {basis * chosen.scale(frame_size):.0f} px at "
            f"{chosen.label} (>= {min_height_px:g} px, cheapest of {len(ranked)})"
        )
    else:
        chosen = max(ranked, key=lambda c: c.scale(frame_size))
        reason = (
            f"{percentile:g}th-percentile person {basis:.0f} px stays under {min_height_px:g} px even at "
            f"{chosen.label} ({basis * chosen.scale(frame_size):.0f} px): using it, the smallest people may be missed"
        )
    scaled = round(basis * chosen.scale(frame_size), 1)
    evidence = Evidence(len(heights), frames, stats, round(basis, 1), min_height_px, scaled, options, reason)
    return Choice(chosen.imgsz, CALIBRATED_CONFIDENCE, chosen.grid), evidence


def _stats(heights: npt.NDArray[np.float64]) -> dict[str, float]:
    if not len(heights):
        return {}
    p5, p50, p95 = np.percentile(heights, [5, 50, 95])
    return {k: round(float(v), 1) for k, v in
            {"min": heights.min(), "p5": p5, "p50": p50, "p95": p95, "max": heights.max()}.items()}  # fmt: skip


State = Literal["calibrated", "no_people", "failed"]


@dataclass(frozen=True, slots=True)
class Calibration:
    """A camera's calibration as stored and shown: the choice (None: default kept), the evidence, when, on what."""

    state: State
    choice: Choice | None
    evidence: Evidence
    reference: str  # the setting heights were measured with
    frame_size: tuple[int, int]
    at: float  # epoch seconds
    model: str  # identity of the model the minimum height is for
    method: str = METHOD

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        """Inverse of ``to_json``; raises KeyError/TypeError/ValueError on a malformed record."""
        ev = dict(data["evidence"])
        ev["options"] = [Option(**o) for o in ev.get("options", [])]
        choice = data.get("choice")
        return cls(
            state=data["state"],
            choice=None if choice is None else Choice(
                int(choice["imgsz"]), float(choice["confidence"]),
                None if choice.get("grid") is None else (int(choice["grid"][0]), int(choice["grid"][1]))),
            evidence=Evidence(**ev),
            reference=str(data["reference"]),
            frame_size=(int(data["frame_size"][0]), int(data["frame_size"][1])),
            at=float(data["at"]),
            model=str(data["model"]),
            method=str(data.get("method", "")),
        )  # fmt: skip

    def summary(self) -> str:
        """One line: the setting and what it rests on."""
        ev = self.evidence
        if self.choice is None:
            return f"default kept: {ev.reason}"
        h = ev.heights_px
        return (
            f"{self.choice.label}: {ev.people} people in {ev.frames} frames at {self.reference}, "
            f"heights p5 {h.get('p5', 0):.0f} / median {h.get('p50', 0):.0f} / p95 {h.get('p95', 0):.0f} px; "
            f"smallest at the model {ev.scaled_px:.0f} px (minimum {ev.min_height_px:g})"
        )
