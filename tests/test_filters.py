"""Per-zone detection filters: minimum height, minimum confidence, exclusion masks by foot or centre."""

from __future__ import annotations

import numpy as np

from monitor.analyze.filters import DetectionFilter, anchor_points, count_zones_filtered
from monitor.analyze.zones import count_zones
from monitor.types import Detections

POSTER = np.array([[400, 100], [600, 100], [600, 300], [400, 300]], np.float32)  # on a wall, above the ground
STATUE = np.array([[100, 450], [200, 450], [200, 520], [100, 520]], np.float32)  # around the statue's plinth


def dets() -> Detections:
    xyxy = np.array(
        [
            [120, 300, 180, 500],  # 0: statue: feet at (150, 500), inside STATUE
            [450, 120, 550, 320],  # 1: poster figure: centre (500, 220) in POSTER, feet (500, 320) below it
            [700, 400, 740, 480],  # 2: small (80 px) far person
            [300, 200, 400, 600],  # 3: a real person, confident
            [800, 300, 900, 600],  # 4: a real person, unsure
        ],
        np.float32,
    )
    return Detections(xyxy, np.array([0.9, 0.8, 0.7, 0.95, 0.3], np.float32))


def test_no_settings_keep_everything() -> None:
    assert DetectionFilter().keep(dets()).tolist() == [True] * 5


def test_min_height_and_confidence() -> None:
    assert DetectionFilter(min_height_px=100).keep(dets()).tolist() == [True, True, False, True, True]
    assert DetectionFilter(min_confidence=0.5).keep(dets()).tolist() == [True, True, True, True, False]
    both = DetectionFilter(min_height_px=80, min_confidence=0.7)  # both bounds are inclusive
    assert both.keep(dets()).tolist() == [True, True, True, True, False]


def test_exclusion_mask_by_foot_point_drops_the_statue_not_the_poster() -> None:
    keep = DetectionFilter(exclude=(STATUE, POSTER), anchor="foot").keep(dets())
    assert keep.tolist() == [False, True, True, True, True]  # the poster figure's feet are below the poster


def test_exclusion_mask_by_centre_drops_the_poster() -> None:
    keep = DetectionFilter(exclude=(STATUE, POSTER), anchor="center").keep(dets())
    assert keep.tolist() == [True, False, True, True, True]  # the statue's centre is above its plinth mask


def test_apply_returns_the_kept_detections() -> None:
    kept = DetectionFilter(min_height_px=100, min_confidence=0.5, exclude=(STATUE,)).apply(dets())
    assert kept.xyxy.tolist() == [[450, 120, 550, 320], [300, 200, 400, 600]]
    assert np.allclose(kept.confidence, [0.8, 0.95])


def test_anchor_points() -> None:
    d = dets()
    assert anchor_points(d, "foot")[0].tolist() == [150, 500]
    assert anchor_points(d, "center")[0].tolist() == [150, 400]


def test_empty_detections() -> None:
    flt = DetectionFilter(min_height_px=10, min_confidence=0.5, exclude=(STATUE,))
    assert flt.keep(Detections.empty()).shape == (0,)
    assert len(flt.apply(Detections.empty())) == 0


def test_per_zone_counts_use_each_zones_filter_and_original_indices() -> None:
    everywhere = np.array([[0, 0], [1000, 0], [1000, 1000], [0, 1000]], np.float32)
    zones = {"near": everywhere, "far": everywhere}
    filters = {"near": DetectionFilter(min_height_px=150, exclude=(STATUE,))}
    counts = count_zones_filtered(dets(), zones, filters, default=DetectionFilter(min_confidence=0.5))
    assert counts["near"].members == (1, 3, 4)
    assert counts["far"].members == (0, 1, 2, 3)
    unfiltered = count_zones_filtered(dets(), zones, {})
    assert unfiltered == count_zones(dets(), zones)  # no filters: same as plain zone counting
