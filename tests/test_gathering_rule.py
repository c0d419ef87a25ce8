"""The gathering rule's state machine, driven by timestamped counts (no video, no clocks)."""

from __future__ import annotations

from collections.abc import Iterable

from monitor.rules.gathering import GatheringParams, GatheringState
from monitor.types import Transition

PARAMS = GatheringParams(min_people=4, dwell_s=5, close_level=4, clear_s=10, tolerance_s=1.5)


def feed(state: GatheringState, samples: Iterable[tuple[float, int]]) -> list[Transition]:
    return [event for ts, count in samples for event in state.update(ts, count)]


def every_half_second(start: float, counts: list[int]) -> list[tuple[float, int]]:
    return [(start + i * 0.5, c) for i, c in enumerate(counts)]


def test_opens_after_dwell() -> None:
    events = feed(GatheringState(PARAMS), every_half_second(0, [4] * 12))
    assert [(e.kind, e.ts) for e in events] == [("opened", 5.0)]


def test_short_crowd_does_not_open() -> None:
    assert feed(GatheringState(PARAMS), every_half_second(0, [5] * 8 + [1] * 20)) == []


def test_a_missed_detection_does_not_reset_the_dwell() -> None:
    counts = [4, 4, 4, 4, 3, 4, 4, 4, 4, 4, 4, 4]  # one dip of 0.5 s < tolerance 1.5 s
    events = feed(GatheringState(PARAMS), every_half_second(0, counts))
    assert [e.kind for e in events] == ["opened"]
    assert events[0].ts == 5.0


def test_a_long_dip_resets_the_dwell() -> None:
    counts = [4] * 6 + [2] * 4 + [4] * 12  # below for 1.5 s (= tolerance): the dwell starts again at t=5.0
    events = feed(GatheringState(PARAMS), every_half_second(0, counts))
    assert [(e.kind, e.ts) for e in events] == [("opened", 10.0)]


def test_flapping_count_opens_once_and_closes_once() -> None:
    state = GatheringState(PARAMS)
    crowd = every_half_second(0, [4] * 12)
    flapping = every_half_second(6, [3, 4] * 20)  # counts hover at the threshold for 20 s
    dispersed = every_half_second(26, [1] * 30)
    events = feed(state, crowd + flapping + dispersed)
    assert [e.kind for e in events] == ["opened", "closed"]
    assert events[1].ts == 36.0  # 10 s (clear_s) after the count first stayed low


def test_hysteresis_band_keeps_incident_open() -> None:
    params = GatheringParams(min_people=5, dwell_s=2, close_level=3, clear_s=4, tolerance_s=1)
    state = GatheringState(params)
    events = feed(state, every_half_second(0, [5] * 6 + [4, 3, 4, 3] * 5 + [2] * 10))
    assert [e.kind for e in events] == ["opened", "closed"]


def test_peak_is_reported_and_kept() -> None:
    state = GatheringState(PARAMS)
    events = feed(state, every_half_second(0, [4] * 11 + [6, 7, 5] + [0] * 25))
    assert [(e.kind, e.peak) for e in events] == [("opened", 4), ("peak", 6), ("peak", 7), ("closed", 7)]


def test_a_resumed_incident_closes_by_the_usual_hysteresis() -> None:
    state = GatheringState(PARAMS)
    state.resume(opened_at=100.0, peak=6)
    events = feed(state, every_half_second(200, [5] * 4 + [0] * 22))
    assert [(e.kind, e.peak, e.until) for e in events] == [("closed", 6, 202.0)]


def test_zero_dwell_opens_on_first_sample() -> None:
    params = GatheringParams(min_people=2, dwell_s=0, close_level=2, clear_s=0, tolerance_s=0)
    state = GatheringState(params)
    assert [e.kind for e in feed(state, [(0.0, 2), (1.0, 0)])] == ["opened", "closed"]
