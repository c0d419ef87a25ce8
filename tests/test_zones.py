"""People per zone, counted by foot point: pure geometry, no video."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.analyze.zones import count_zones, points_in_polygon, to_pixels
from monitor.types import Detections


def boxes(*xyxy: tuple[float, float, float, float]) -> Detections:
    arr = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    return Detections(arr, np.full(len(arr), 0.9, np.float32))


SQUARE = np.asarray([[0, 0], [10, 0], [10, 10], [0, 10]], np.float32)
TRIANGLE = np.asarray([[0, 0], [10, 0], [0, 10]], np.float32)


@pytest.mark.parametrize(
    ("point", "polygon", "inside"),
    [
        ((5, 5), SQUARE, True),
        ((11, 5), SQUARE, False),
        ((-1, 5), SQUARE, False),
        ((2, 2), TRIANGLE, True),
        ((8, 8), TRIANGLE, False),
    ],
)
def test_points_in_polygon(point: tuple[float, float], polygon: np.ndarray, inside: bool) -> None:
    got = points_in_polygon(np.asarray([point], np.float32), polygon)
    assert got.tolist() == [inside]


def test_concave_polygon() -> None:
    u_shape = np.asarray([[0, 0], [3, 0], [3, 8], [7, 8], [7, 0], [10, 0], [10, 10], [0, 10]], np.float32)
    pts = np.asarray([[5, 4], [5, 9], [1, 1], [9, 1]], np.float32)
    assert points_in_polygon(pts, u_shape).tolist() == [False, True, True, True]


def test_counts_use_the_foot_point_not_the_box_centre() -> None:
    zone = {"road": to_pixels([(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)], (100, 100), relative=True)}
    dets = boxes(
        (10, 20, 20, 60),  # centre above the line, feet inside: counted
        (30, 10, 40, 45),  # entirely above: not counted
        (50, 55, 60, 95),  # entirely inside: counted
    )
    counts = count_zones(dets, zone)
    assert counts["road"].count == 2
    assert counts["road"].members == (0, 2)


def test_pixel_zones_are_taken_as_given() -> None:
    poly = to_pixels([(100, 100), (200, 100), (200, 200)], (1920, 1080), relative=False)
    assert poly.tolist() == [[100, 100], [200, 100], [200, 200]]


def test_no_people_no_count() -> None:
    counts = count_zones(Detections.empty(), {"z": SQUARE})
    assert counts["z"].count == 0 and counts["z"].members == ()
