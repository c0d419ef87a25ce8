"""The checkpoint-staffing state machine, driven by timestamped counts and a real duty schedule."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from zoneinfo import ZoneInfo

from monitor.rules.schedule import Schedule, Window
from monitor.rules.staffing import StaffingParams, StaffingState
from monitor.types import Transition

PARAMS = StaffingParams(min_staff=2, unstaffed_s=30, restored_s=10, tolerance_s=3, max_gap_s=10)
DUTY = Schedule([Window(frozenset(range(5)), 8 * 60, 18 * 60)])  # weekdays 08:00-18:00, Asia/Shanghai
NIGHT = Schedule([Window(frozenset(range(7)), 22 * 60, 6 * 60)])  # daily 22:00-06:00


def sh(mo: int, d: int, h: int, mi: int = 0, s: float = 0) -> float:
    return datetime(2025, mo, d, h, mi, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() + s


MONDAY_9 = sh(9, 29, 9)  # 2025-09-29 is a Monday


def spans(start: float, *parts: tuple[float, int], step: float = 0.5) -> list[tuple[float, int]]:
    """Observations every ``step`` seconds: each part is (duration_s, count)."""
    out: list[tuple[float, int]] = []
    t = start
    for duration, count in parts:
        n = round(duration / step)
        out += [(t + i * step, count) for i in range(n)]
        t += n * step
    return out


def feed(state: StaffingState, samples: Iterable[tuple[float, int]]) -> list[Transition]:
    return [e for ts, count in samples for e in state.update(ts, count)]


def test_staff_leave_longer_than_t_and_return_gives_one_incident_with_the_right_duration() -> None:
    state = StaffingState(PARAMS, DUTY)
    events = feed(state, spans(MONDAY_9, (100, 2), (100, 1), (100, 2)))
    assert [(e.kind, e.ts - MONDAY_9) for e in events] == [("opened", 130.0), ("closed", 210.0)]
    opened, closed = events
    assert opened.since == closed.since == MONDAY_9 + 100  # dated from when they left, not when it fired
    assert closed.until == MONDAY_9 + 200 and closed.reason == "restored"
    assert closed.duration_s == 100.0
    assert closed.peak == 1, "a checkpoint's peak is the fewest staff seen"
    assert closed.details["lowest"] == 1 and closed.details["reason"] == "restored"
    assert not state.open


def test_absence_shorter_than_t_opens_nothing() -> None:
    events = feed(StaffingState(PARAMS, DUTY), spans(MONDAY_9, (60, 2), (25, 0), (60, 2)))
    assert events == []


def test_flickering_detector_on_present_staff_never_opens() -> None:
    flicker = [c for _ in range(300) for c in (2, 1, 1, 2)]  # one of them missed half the time, for 10 min
    samples = [(MONDAY_9 + i * 0.5, c) for i, c in enumerate(flicker)]
    assert feed(StaffingState(PARAMS, DUTY), samples) == []


def test_flapping_around_k_during_an_incident_keeps_it_open_and_closes_once() -> None:
    state = StaffingState(PARAMS, DUTY)
    flapping = [part for _ in range(10) for part in ((6, 2), (6, 1))]  # back 6 s, gone 6 s: never 10 s in a row
    events = feed(state, spans(MONDAY_9, (10, 2), (40, 0), *flapping, (30, 2)))
    assert [e.kind for e in events] == ["opened", "closed"]
    assert events[1].until == MONDAY_9 + 10 + 40 + 120  # the first spell that lasted restored_s


def test_passer_by_does_not_reset_the_unstaffed_timer() -> None:
    events = feed(StaffingState(PARAMS, DUTY), spans(MONDAY_9, (10, 2), (15, 0), (2, 2), (20, 0)))
    assert [(e.kind, e.since - MONDAY_9, e.ts - MONDAY_9) for e in events] == [("opened", 10.0, 40.0)]


def test_staff_back_for_restored_s_before_t_resets_the_timer() -> None:
    events = feed(StaffingState(PARAMS, DUTY), spans(MONDAY_9, (10, 2), (20, 0), (12, 2), (20, 0)))
    assert events == []


def test_outside_duty_hours_nothing_fires() -> None:
    evening = sh(9, 29, 18, 30)
    saturday = sh(10, 4, 10)
    state = StaffingState(PARAMS, DUTY)
    assert feed(state, spans(evening, (600, 0))) == []
    assert feed(state, spans(saturday, (600, 0))) == []


def test_duty_window_end_closes_the_incident_at_the_window_end() -> None:
    state = StaffingState(PARAMS, DUTY)
    events = feed(state, spans(sh(9, 29, 17, 58), (300, 0)))  # empty from 17:58 to 18:03
    assert [e.kind for e in events] == ["opened", "closed"]
    closed = events[1]
    assert closed.reason == "off_duty"
    assert closed.ts == sh(9, 29, 18, 0)  # the first observation after the end
    assert closed.until == sh(9, 29, 18, 0)
    assert closed.since == sh(9, 29, 17, 58)


def test_tick_closes_at_duty_end_when_no_observation_arrives() -> None:
    state = StaffingState(PARAMS, DUTY)
    assert [e.kind for e in feed(state, spans(sh(9, 29, 17, 50), (300, 0)))] == ["opened"]
    assert state.tick(sh(9, 29, 17, 59)) == []
    (closed,) = state.tick(sh(9, 29, 18, 0, 7))
    assert (closed.kind, closed.reason, closed.until) == ("closed", "off_duty", sh(9, 29, 18, 0))


def test_duty_start_with_nobody_there_counts_from_the_window_start() -> None:
    state = StaffingState(PARAMS, DUTY)
    events = feed(state, spans(sh(9, 29, 7, 50), (900, 0)))  # empty from 07:50; duty from 08:00
    assert [(e.kind, e.since, e.ts) for e in events] == [("opened", sh(9, 29, 8, 0), sh(9, 29, 8, 0, 30))]


def test_overnight_duty_across_midnight() -> None:
    state = StaffingState(PARAMS, NIGHT)
    events = feed(state, spans(sh(9, 29, 23, 59), (30, 2), (200, 0), (60, 2)))  # gone at 23:59:30
    assert [e.kind for e in events] == ["opened", "closed"]
    assert events[0].ts == sh(9, 30, 0, 0) and events[1].duration_s == 200.0


def test_holiday_means_no_duty() -> None:
    holiday = Schedule([Window(frozenset(range(7)), 8 * 60, 18 * 60)], holidays=[date(2025, 10, 1)])
    assert feed(StaffingState(PARAMS, holiday), spans(sh(10, 1, 9), (600, 0))) == []


def test_detection_gap_alone_does_not_open() -> None:
    state = StaffingState(PARAMS, DUTY)
    # staffed, then no observations for 10 minutes, then the staff are seen again
    samples = spans(MONDAY_9, (60, 2)) + spans(MONDAY_9 + 660, (60, 2))
    assert feed(state, samples) == []


def test_time_before_a_gap_does_not_count_toward_t() -> None:
    state = StaffingState(PARAMS, DUTY)
    before = spans(MONDAY_9, (10, 2), (20, 0))  # short for 20 s of the 30 s ...
    after = spans(MONDAY_9 + 300, (29, 0), (5, 0))  # ... gap, then the timer starts over
    events = feed(state, before + after)
    assert [(e.kind, e.since, e.ts) for e in events] == [("opened", MONDAY_9 + 300, MONDAY_9 + 330)]


def test_gap_keeps_an_open_incident_open() -> None:
    state = StaffingState(PARAMS, DUTY)
    first = feed(state, spans(MONDAY_9, (10, 2), (40, 0), (6, 2)))  # open, restoring for 6 s ...
    later = feed(state, spans(MONDAY_9 + 300, (6, 2), (10, 2)))  # ... gap: restoring starts over
    assert [e.kind for e in first] == ["opened"]
    assert [(e.kind, e.until) for e in later] == [("closed", MONDAY_9 + 300)]


def test_state_stays_small_over_a_long_day() -> None:
    state = StaffingState(PARAMS, DUTY)
    counts = [2 if (i // 400) % 3 else 0 for i in range(20_000)]  # 10k s of leaving and returning
    events = feed(state, [(MONDAY_9 + i * 0.5, c) for i, c in enumerate(counts)])
    assert [e.kind for e in events][:4] == ["opened", "closed", "opened", "closed"]
    scalars = {k: v for k, v in vars(state).items() if k not in ("params", "schedule", "phase")}
    assert all(v is None or isinstance(v, int | float) for v in scalars.values())  # no growing containers
    assert len(state.schedule._cache) <= 8
