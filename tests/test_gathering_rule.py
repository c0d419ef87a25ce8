"""The gathering rule's state machine, driven by timestamped counts (no video, no clocks)."""

from __future__ import annotations

from collections.abc import Iterable

from monitor.rules.gathering import GatheringParams, GatheringState, RuleEvent

PARAMS = GatheringParams(min_people=4, dwell_s=5, close_level=4, clear_s=10, tolerance_s=1.5, cooldown_s=120)


def feed(state: GatheringState, samples: Iterable[tuple[float, int]]) -> list[RuleEvent]:
    return [event for ts, count in samples for event in state.update(ts, count)]


def every_half_second(start: float, counts: list[int]) -> list[tuple[float, int]]:
    return [(start + i * 0.5, c) for i, c in enumerate(counts)]


def test_opens_after_dwell_and_announces() -> None:
    events = feed(GatheringState(PARAMS), every_half_second(0, [4] * 12))
    assert [(e.transition, e.ts, e.announce) for e in events] == [("opened", 5.0, True)]


def test_short_crowd_does_not_open() -> None:
    assert feed(GatheringState(PARAMS), every_half_second(0, [5] * 8 + [1] * 20)) == []


def test_a_missed_detection_does_not_reset_the_dwell() -> None:
    counts = [4, 4, 4, 4, 3, 4, 4, 4, 4, 4, 4, 4]  # one dip of 0.5 s < tolerance 1.5 s
    events = feed(GatheringState(PARAMS), every_half_second(0, counts))
    assert [e.transition for e in events] == ["opened"]
    assert events[0].ts == 5.0


def test_a_long_dip_resets_the_dwell() -> None:
    counts = [4] * 6 + [2] * 4 + [4] * 12  # below for 1.5 s (= tolerance): the dwell starts again at t=5.0
    events = feed(GatheringState(PARAMS), every_half_second(0, counts))
    assert [(e.transition, e.ts) for e in events] == [("opened", 10.0)]


def test_flapping_count_opens_once_and_closes_once() -> None:
    state = GatheringState(PARAMS)
    crowd = every_half_second(0, [4] * 12)
    flapping = every_half_second(6, [3, 4] * 20)  # counts hover at the threshold for 20 s
    dispersed = every_half_second(26, [1] * 30)
    events = feed(state, crowd + flapping + dispersed)
    assert [e.transition for e in events] == ["opened", "closed"]
    assert events[1].ts == 36.0  # 10 s (clear_s) after the count first stayed low


def test_hysteresis_band_keeps_incident_open() -> None:
    params = GatheringParams(min_people=5, dwell_s=2, close_level=3, clear_s=4, tolerance_s=1, cooldown_s=60)
    state = GatheringState(params)
    events = feed(state, every_half_second(0, [5] * 6 + [4, 3, 4, 3] * 5 + [2] * 10))
    assert [e.transition for e in events] == ["opened", "closed"]


def test_peak_is_reported_and_kept() -> None:
    state = GatheringState(PARAMS)
    events = feed(state, every_half_second(0, [4] * 11 + [6, 7, 5] + [0] * 25))
    assert [(e.transition, e.peak) for e in events] == [("opened", 4), ("peak", 6), ("peak", 7), ("closed", 7)]


def test_cooldown_suppresses_the_second_announcement() -> None:
    state = GatheringState(PARAMS)
    gathering = [4] * 12 + [0] * 22  # opens at +5 s, closes at +16 s
    first = feed(state, every_half_second(0, gathering))
    second = feed(state, every_half_second(30, gathering))  # 30 s later: within 120 s cooldown
    third = feed(state, every_half_second(200, gathering))  # after the cooldown
    assert [(e.transition, e.announce) for e in first] == [("opened", True), ("closed", False)]
    assert [(e.transition, e.announce) for e in second] == [("opened", False), ("closed", False)]
    assert [(e.transition, e.announce) for e in third] == [("opened", True), ("closed", False)]


def test_zero_dwell_opens_on_first_sample() -> None:
    params = GatheringParams(min_people=2, dwell_s=0, close_level=2, clear_s=0, tolerance_s=0, cooldown_s=0)
    state = GatheringState(params)
    assert [e.transition for e in feed(state, [(0.0, 2), (1.0, 0)])] == ["opened", "closed"]
