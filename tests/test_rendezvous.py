"""Weighted rendezvous hashing (monitor/cluster/rendezvous.py): deterministic, moves only what it must."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.cluster.rendezvous import rendezvous

CAMERAS = [f"cam-{i:04d}" for i in range(1000)]
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
clusters = st.dictionaries(names, st.sampled_from([1.0, 2.0, 3.0]), min_size=1, max_size=8)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(clusters, names, st.sampled_from([1.0, 2.0]))
def test_a_joining_node_takes_only_about_its_share(nodes: dict[str, float], new: str, capacity: float) -> None:
    if new in nodes:
        return
    before = rendezvous(CAMERAS, nodes)
    after = rendezvous(CAMERAS, {**nodes, new: capacity})
    moved = [camera for camera in CAMERAS if before[camera] != after[camera]]
    assert all(after[camera] == new for camera in moved), "a camera moved between two old nodes"
    fair = len(CAMERAS) * capacity / (sum(nodes.values()) + capacity)
    assert len(moved) <= 1.5 * fair, (len(moved), fair)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(clusters.filter(lambda n: len(n) >= 2), st.data())
def test_a_leaving_node_gives_up_only_its_own(nodes: dict[str, float], data: st.DataObject) -> None:
    gone = data.draw(st.sampled_from(sorted(nodes)))
    before = rendezvous(CAMERAS, nodes)
    after = rendezvous(CAMERAS, {n: c for n, c in nodes.items() if n != gone})
    assert {camera for camera in CAMERAS if before[camera] != after[camera]} == {
        camera for camera in CAMERAS if before[camera] == gone
    }


@settings(max_examples=20, deadline=None, derandomize=True)
@given(clusters)
def test_deterministic_whatever_the_order(nodes: dict[str, float]) -> None:
    reordered = dict(reversed(list(nodes.items())))
    assert rendezvous(CAMERAS, nodes) == rendezvous(list(reversed(CAMERAS)), reordered)


def test_capacity_weighs_the_share() -> None:
    counts = Counter(rendezvous(CAMERAS, {"small": 1.0, "big": 3.0}).values())
    assert 0.68 < counts["big"] / len(CAMERAS) < 0.82, counts  # 3/4 expected


def test_no_node_no_owner_and_zero_capacity_is_out() -> None:
    assert rendezvous(CAMERAS[:3], {}) == {}
    assert set(rendezvous(CAMERAS, {"a": 1.0, "b": 0.0}).values()) == {"a"}
