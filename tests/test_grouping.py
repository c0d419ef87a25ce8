"""Perspective-aware grouping: hand-built scenes and invariance properties (order, scale, translation)."""

from __future__ import annotations

import random

import numpy as np
import numpy.typing as npt
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from monitor.analyze.gathering import (
    EYE_TO_ANKLE_FRACTION,
    body_heights,
    components,
    find_groups,
    largest_group_size,
    together,
)
from monitor.types import Detections

Person = tuple[float, float, float]  # foot x, foot y, height


def people(*persons: Person, keypoints: npt.NDArray[np.float32] | None = None) -> Detections:
    """Boxes half as wide as tall, standing on (x, y)."""
    xyxy = np.array([[x - h / 4, y - h, x + h / 4, y] for x, y, h in persons], dtype=np.float32).reshape(-1, 4)
    return Detections(xyxy, np.full(len(xyxy), 0.9, np.float32), keypoints)


def member_sets(
    dets: Detections,
    k: float,
    mask: npt.NDArray[np.bool_] | None = None,
    max_height_ratio: float | None = None,
) -> set[frozenset[int]]:
    return {frozenset(g.members) for g in find_groups(dets, k=k, mask=mask, max_height_ratio=max_height_ratio)}


def pose(persons: list[Person], span_ratio: list[float], ankles_visible: bool = True) -> npt.NDArray[np.float32]:
    """COCO-17 keypoints: eyes/nose span_ratio * 0.89 * h above the ankles."""
    kp = np.zeros((len(persons), 17, 3), np.float32)
    for i, ((x, y, h), r) in enumerate(zip(persons, span_ratio, strict=True)):
        head_y = y - r * EYE_TO_ANKLE_FRACTION * h
        kp[i, [0, 1, 2]] = [x, head_y, 0.9]
        kp[i, [15, 16]] = [x, y, 0.9 if ankles_visible else 0.1]
    return kp


def inside_or_on(points: npt.NDArray[np.float32], hull: npt.NDArray[np.float32]) -> bool:
    """Every point is on the inner side of every edge of the convex polygon (or on it)."""
    a, b = hull.astype(np.float64), np.roll(hull, -1, axis=0).astype(np.float64)
    p = points.astype(np.float64)[:, None, :]
    cross = (b[:, 0] - a[:, 0]) * (p[..., 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (p[..., 0] - a[:, 0])
    return bool((cross >= -1e-6).all() or (cross <= 1e-6).all())


def test_close_pair_is_a_group_and_a_distant_pair_is_not() -> None:
    assert member_sets(people((100, 500, 200), (260, 500, 200)), k=1.0) == {frozenset({0, 1})}  # 0.8 h
    assert member_sets(people((100, 500, 200), (340, 500, 200)), k=1.0) == set()  # 1.2 h


def test_groups_are_connected_components() -> None:
    dets = people((0, 500, 100), (90, 500, 100), (180, 500, 100), (600, 500, 100))  # A-B, B-C; A-C is 1.8 h
    groups = find_groups(dets, k=1.0, min_size=1)
    assert [g.members for g in groups] == [(0, 1, 2), (3,)]
    assert groups[0].size == 3
    assert groups[0].spread_in_body_heights == 1.8
    assert groups[1].spread_in_body_heights == 0.0


def test_far_small_group_and_near_large_group_are_both_found_with_one_k() -> None:
    far = [(300 + i * 35.0, 200.0, 50.0) for i in range(4)]  # 0.7 h apart, 50 px tall, at the back
    near = [(200 + i * 210.0, 700.0, 300.0) for i in range(3)]  # 0.7 h apart, 300 px tall, in front
    far_pair_apart = [(800.0, 220.0, 50.0), (880.0, 220.0, 50.0)]  # 80 px apart (1.6 h): not together
    dets = people(*far, *near, *far_pair_apart)
    groups = find_groups(dets, k=1.0, min_size=2)
    assert [g.members for g in groups] == [(0, 1, 2, 3), (4, 5, 6)]
    # a fixed pixel threshold could not do this: the near group's spacing (210 px) is larger than the
    # far pair's (80 px), yet only the near group is together
    assert largest_group_size(groups) == 4


def test_group_report_centroid_polygon_and_spread() -> None:
    dets = people((100, 400, 100), (150, 420, 100), (120, 380, 100))
    (group,) = find_groups(dets, k=1.0)
    assert np.allclose(group.centroid, (370 / 3, 400.0))
    feet = dets.foot_points()
    hull = group.polygon
    assert hull.dtype == np.float32 and hull.shape[1] == 2
    # the hull's vertices are box-bottom corners, and every foot point is inside it
    corners = {(float(x), float(y)) for b in dets.xyxy for x, y in ((b[0], b[3]), (b[2], b[3]))}
    assert {(float(x), float(y)) for x, y in hull} <= corners
    assert inside_or_on(feet, hull)
    assert np.isclose(group.spread_in_body_heights, np.hypot(50, 20) / 100)


def test_zone_restriction_uses_feet_and_keeps_original_indices() -> None:
    # a zone with a notch: 0 and 2 are inside, 1 stands in the notch (outside) between them and would chain them
    zone = np.array([[0, 0], [420, 0], [420, 1000], [520, 1000], [520, 0], [1000, 0], [1000, 1100], [0, 1100]])
    zone = zone.astype(np.float32)
    dets = people((380, 500, 100), (470, 500, 100), (560, 500, 100), (50, 800, 100), (120, 800, 100))
    assert member_sets(dets, k=1.0) == {frozenset({0, 1, 2}), frozenset({3, 4})}
    assert [g.members for g in find_groups(dets, k=1.0, zone=zone)] == [(3, 4)]
    assert [g.members for g in find_groups(dets, k=1.0, min_size=1, zone=zone)] == [(3, 4), (0,), (2,)]


def test_mask_leaves_people_out_before_grouping() -> None:
    dets = people((0, 500, 100), (90, 500, 100), (180, 500, 100))
    mask = np.array([True, False, True])
    assert member_sets(dets, k=1.0, mask=mask) == set()  # the middle one no longer bridges
    assert member_sets(dets, k=1.0, mask=np.array([False, True, True])) == {frozenset({1, 2})}


def test_empty_and_single() -> None:
    assert find_groups(Detections.empty()) == []
    assert find_groups(people((10, 10, 10))) == []
    (single,) = find_groups(people((10, 10, 10)), min_size=1)
    assert single.members == (0,) and len(single.polygon) == 2  # one box bottom edge: a segment


def test_keypoints_correct_a_box_inflated_by_raised_arms() -> None:
    persons = [(100.0, 500.0, 200.0), (260.0, 500.0, 200.0)]  # boxes 200 tall: 0.8 h apart
    true_body = pose(persons, [0.75, 0.75])  # skeletons say 150 px bodies: 160 px is 1.07 h
    assert member_sets(people(*persons), k=1.0) == {frozenset({0, 1})}
    assert member_sets(people(*persons, keypoints=true_body), k=1.0) == set()
    assert np.allclose(body_heights(people(*persons, keypoints=true_body)), 150.0)


def test_unreliable_keypoints_fall_back_to_the_box() -> None:
    persons = [(100.0, 500.0, 200.0), (260.0, 500.0, 200.0)]
    hidden_ankles = pose(persons, [0.75, 0.75], ankles_visible=False)
    implausible = pose(persons, [0.3, 0.3])  # a 60 px skeleton in a 200 px box: mis-fitted
    assert np.allclose(body_heights(people(*persons, keypoints=hidden_ankles)), 200.0)
    assert np.allclose(body_heights(people(*persons, keypoints=implausible)), 200.0)


def test_max_height_ratio_rejects_near_far_overlap() -> None:
    dets = people((500, 600, 300), (560, 480, 60))  # feet 134 px apart, mean height 180: linked by k alone
    assert member_sets(dets, k=1.0) == {frozenset({0, 1})}
    assert member_sets(dets, k=1.0, max_height_ratio=2.0) == set()


# --- properties --------------------------------------------------------------------------------------------

person = st.tuples(
    st.floats(0, 1000, allow_nan=False), st.floats(100, 1000, allow_nan=False), st.floats(20, 300, allow_nan=False)
)
crowds = st.lists(person, min_size=0, max_size=25)
KS = st.sampled_from([0.5, 1.0, 1.5, 2.5])


def groups_of(dets: Detections, k: float) -> set[frozenset[int]]:
    return {frozenset(g.members) for g in find_groups(dets, k=k, min_size=1)}


def away_from_threshold(dets: Detections, k: float) -> bool:
    """No pair sits within 0.1 % of the k-body-heights boundary (float32 rounding could flip it)."""
    feet = dets.foot_points().astype(np.float64)
    h = body_heights(dets)
    d = np.hypot(*(feet[:, None] - feet[None, :]).transpose(2, 0, 1))
    ratio = d / (k * (h[:, None] + h[None, :]) / 2)
    return bool(np.all(np.abs(ratio - 1) > 1e-3))


def scaled(dets: Detections, s: float, dx: float = 0.0, dy: float = 0.0) -> Detections:
    xyxy = (dets.xyxy.astype(np.float64) * s + [dx, dy, dx, dy]).astype(np.float32)
    kp = None
    if dets.keypoints is not None:
        kp = dets.keypoints.copy()
        kp[..., :2] = (kp[..., :2].astype(np.float64) * s + [dx, dy]).astype(np.float32)
    return Detections(xyxy, dets.confidence, kp)


@settings(max_examples=200, deadline=None)
@given(crowds, KS, st.randoms(use_true_random=False))
def test_groups_do_not_depend_on_detection_order(crowd: list[Person], k: float, rnd: random.Random) -> None:
    dets = people(*crowd)
    perm = np.array(rnd.sample(range(len(crowd)), len(crowd)), dtype=np.intp)
    shuffled = dets[perm]
    expected = {frozenset(int(np.flatnonzero(perm == i)[0]) for i in g) for g in groups_of(dets, k)}
    assert groups_of(shuffled, k) == expected


@settings(max_examples=200, deadline=None)
@given(crowds, KS, st.floats(0.05, 20))
def test_scaling_all_boxes_leaves_groups_unchanged(crowd: list[Person], k: float, s: float) -> None:
    dets = people(*crowd)
    assume(away_from_threshold(dets, k))
    assert groups_of(scaled(dets, s), k) == groups_of(dets, k)


@settings(max_examples=200, deadline=None)
@given(crowds, KS, st.floats(-500, 500), st.floats(-500, 500))
def test_translating_all_boxes_leaves_groups_unchanged(crowd: list[Person], k: float, dx: float, dy: float) -> None:
    dets = people(*crowd)
    assume(away_from_threshold(dets, k))
    assert groups_of(scaled(dets, 1.0, dx, dy), k) == groups_of(dets, k)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(person, st.sampled_from([0.3, 0.8, 1.0, 1.2]), st.booleans()), max_size=15),
    KS,
    st.floats(0.1, 10),
)
def test_scale_invariance_holds_with_keypoints(rows: list[tuple[Person, float, bool]], k: float, s: float) -> None:
    crowd = [p for p, _, _ in rows]
    kp = pose(crowd, [r for _, r, _ in rows])
    for i, (_, _, visible) in enumerate(rows):
        kp[i, [15, 16], 2] = 0.9 if visible else 0.1
    dets = people(*crowd, keypoints=kp)
    assume(away_from_threshold(dets, k))
    assert groups_of(scaled(dets, s), k) == groups_of(dets, k)


@settings(max_examples=200, deadline=None)
@given(crowds, KS)
def test_groups_are_exactly_the_components_of_the_relation(crowd: list[Person], k: float) -> None:
    dets = people(*crowd)
    rel = together(dets, k)
    groups = find_groups(dets, k=k, min_size=1)
    label = {m: gi for gi, g in enumerate(groups) for m in g.members}
    assert sorted(label) == list(range(len(crowd)))  # a partition
    for i, j in zip(*np.nonzero(rel), strict=True):
        assert label[int(i)] == label[int(j)]  # linked people share a group
    for g in groups:  # and each group is connected (breadth-first inside it)
        seen, todo = {g.members[0]}, [g.members[0]]
        while todo:
            i = todo.pop()
            for j in np.flatnonzero(rel[i]):
                if int(j) not in seen:
                    seen.add(int(j))
                    todo.append(int(j))
        assert seen == set(g.members)


def test_components_of_a_chain_of_200_is_one_group() -> None:
    rel = np.zeros((200, 200), bool)
    idx = np.arange(199)
    rel[idx, idx + 1] = rel[idx + 1, idx] = True
    assert components(rel) == [list(range(200))]
