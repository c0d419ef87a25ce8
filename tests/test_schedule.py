"""Duty schedules in local wall time: overnight windows, holidays, make-up days, midnight and DST edges."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.rules.schedule import MINUTES_PER_DAY, QuietHours, Schedule, Window

DAILY = frozenset(range(7))
WEEKDAYS = frozenset(range(5))
H = 3600.0


def at(tz: str, y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: float = 0, fold: int = 0) -> float:
    """Epoch seconds of a local wall time (``fold=1``: the second occurrence of a repeated time)."""
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(tz), fold=fold).timestamp() + s


def sh(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: float = 0) -> float:
    return at("Asia/Shanghai", y, mo, d, h, mi, s)


def window(days: frozenset[int], start: str, end: str) -> Window:
    def minutes(hhmm: str) -> int:
        hh, mm = hhmm.split(":")
        return int(hh) * 60 + int(mm)

    return Window(days, minutes(start), minutes(end))


def test_default_zone_is_shanghai_and_day_window_edges() -> None:
    s = Schedule([window(WEEKDAYS, "08:00", "18:00")])
    assert s.tz.key == "Asia/Shanghai"
    # 2025-09-29 is a Monday
    assert not s.active(sh(2025, 9, 29, 7, 59, 59.9))
    assert s.active(sh(2025, 9, 29, 8, 0))  # start is inclusive
    assert s.active(sh(2025, 9, 29, 17, 59, 59.9))
    assert not s.active(sh(2025, 9, 29, 18, 0))  # end is exclusive
    assert not s.active(sh(2025, 10, 4, 12, 0))  # Saturday


def test_overnight_window_belongs_to_the_day_it_starts() -> None:
    s = Schedule([window(frozenset({0}), "22:00", "06:00")])  # Monday night only
    assert not s.active(sh(2025, 9, 29, 21, 59))
    assert s.active(sh(2025, 9, 29, 22, 0))
    assert s.active(sh(2025, 9, 29, 23, 59, 59.9))
    assert s.active(sh(2025, 9, 30, 0, 0))  # past midnight: Tuesday, still Monday's shift
    assert s.active(sh(2025, 9, 30, 5, 59))
    assert not s.active(sh(2025, 9, 30, 6, 0))
    assert not s.active(sh(2025, 9, 29, 1, 0))  # Monday early morning is Sunday night's shift: not configured
    assert not s.active(sh(2025, 9, 30, 23, 0))  # Tuesday night: not configured


def test_window_ending_at_midnight_and_all_day() -> None:
    evening = Schedule([window(DAILY, "18:00", "24:00")])
    assert evening.active(sh(2025, 9, 29, 23, 59, 59.9))
    assert not evening.active(sh(2025, 9, 30, 0, 0))
    assert evening.next_change(sh(2025, 9, 29, 20, 0)) == sh(2025, 9, 30, 0, 0)
    all_day = Schedule([window(DAILY, "00:00", "24:00")])
    assert all(all_day.active(sh(2025, 9, 29) + i * 997.0) for i in range(200))
    assert all_day.next_change(sh(2025, 9, 29, 23, 59)) is None  # midnight is not a change


def test_adjacent_windows_merge_across_midnight() -> None:
    s = Schedule([window(DAILY, "20:00", "24:00"), window(DAILY, "00:00", "02:00")])
    assert s.active(sh(2025, 9, 30, 0, 0))
    assert s.next_change(sh(2025, 9, 29, 21, 0)) == sh(2025, 9, 30, 2, 0)


def test_holiday_cancels_windows_that_start_that_day() -> None:
    national_day = date(2025, 10, 1)  # a Wednesday
    s = Schedule([window(DAILY, "08:00", "18:00"), window(DAILY, "22:00", "06:00")], holidays=[national_day])
    assert s.active(sh(2025, 9, 30, 12, 0))
    assert s.active(sh(2025, 10, 1, 5, 0))  # the eve's night shift ends normally
    assert not s.active(sh(2025, 10, 1, 12, 0))
    assert not s.active(sh(2025, 10, 1, 23, 0))
    assert not s.active(sh(2025, 10, 2, 5, 0))  # the holiday's own night shift is cancelled
    assert s.active(sh(2025, 10, 2, 12, 0))
    assert s.next_change(sh(2025, 10, 1, 6, 0) - 1) == sh(2025, 10, 1, 6, 0)
    assert s.next_change(sh(2025, 10, 1, 6, 0)) == sh(2025, 10, 2, 8, 0)


def test_extra_day_follows_monday_windows() -> None:
    makeup_sunday = date(2025, 9, 28)  # China's make-up working day before the National Day week
    s = Schedule([window(WEEKDAYS, "08:00", "18:00")], extra_days=[makeup_sunday])
    assert s.active(sh(2025, 9, 28, 9, 0))
    assert not s.active(sh(2025, 9, 27, 9, 0))  # the Saturday before: normal weekend
    saturday_like = Schedule([window(frozenset({5}), "10:00", "12:00")], extra_days=[makeup_sunday], extra_days_like=5)
    assert saturday_like.active(sh(2025, 9, 28, 11, 0))


def test_next_change_from_friday_evening_is_monday_morning() -> None:
    s = Schedule([window(WEEKDAYS, "08:00", "18:00")])
    assert s.next_change(sh(2025, 10, 3, 19, 0)) == sh(2025, 10, 6, 8, 0)
    assert s.next_change(sh(2025, 10, 6, 9, 0)) == sh(2025, 10, 6, 18, 0)


def test_never_active_schedule() -> None:
    s = Schedule([])
    assert not s.active(sh(2025, 1, 1))
    assert s.next_change(sh(2025, 1, 1)) is None


def test_long_holiday_run_is_skipped_by_next_change() -> None:
    holidays = [date(2025, 1, 1) + timedelta(days=i) for i in range(60)]
    s = Schedule([window(DAILY, "08:00", "18:00")], holidays=holidays)
    assert s.next_change(sh(2025, 1, 1)) == sh(2025, 3, 2, 8, 0)


# --- DST: windows are local wall time ---------------------------------------------------------------------


def test_berlin_spring_forward_night_shift_is_seven_hours() -> None:
    s = Schedule([window(DAILY, "22:00", "06:00")], "Europe/Berlin")
    start, end = s.intervals(date(2025, 3, 29))[0]  # clocks jump 02:00 -> 03:00 on 2025-03-30
    assert start == at("Europe/Berlin", 2025, 3, 29, 22, 0)
    assert end == at("Europe/Berlin", 2025, 3, 30, 6, 0)
    assert end - start == 7 * H
    assert s.active(at("Europe/Berlin", 2025, 3, 30, 3, 30))


def test_berlin_spring_forward_start_in_the_gap_moves_to_the_jump() -> None:
    s = Schedule([window(DAILY, "02:30", "04:00")], "Europe/Berlin")
    start, end = s.intervals(date(2025, 3, 30))[0]
    jump = at("Europe/Berlin", 2025, 3, 30, 3, 0)  # 01:00 UTC
    assert start == jump == datetime(2025, 3, 30, 1, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    assert end - start == 1 * H
    assert not s.active(jump - 1)
    assert s.active(jump)
    gap_only = Schedule([window(DAILY, "02:10", "02:50")], "Europe/Berlin")
    assert gap_only.intervals(date(2025, 3, 30)) == ()  # the whole window was skipped by the clock
    assert len(gap_only.intervals(date(2025, 3, 31))) == 1


def test_berlin_fall_back_night_shift_is_nine_hours() -> None:
    s = Schedule([window(DAILY, "22:00", "06:00")], "Europe/Berlin")
    start, end = s.intervals(date(2025, 10, 25))[0]  # clocks go 03:00 -> 02:00 on 2025-10-26
    assert end - start == 9 * H
    assert s.active(at("Europe/Berlin", 2025, 10, 26, 2, 30, fold=0))
    assert s.active(at("Europe/Berlin", 2025, 10, 26, 2, 30, fold=1))


def test_berlin_fall_back_window_ends_at_first_occurrence() -> None:
    s = Schedule([window(DAILY, "00:00", "02:30")], "Europe/Berlin")
    assert s.active(at("Europe/Berlin", 2025, 10, 26, 2, 15, fold=0))
    assert not s.active(at("Europe/Berlin", 2025, 10, 26, 2, 45, fold=0))
    assert not s.active(at("Europe/Berlin", 2025, 10, 26, 2, 15, fold=1))  # no restart when 02:15 comes again
    assert s.next_change(at("Europe/Berlin", 2025, 10, 26, 1, 0)) == at("Europe/Berlin", 2025, 10, 26, 2, 30)


def test_new_york_spring_forward_and_fall_back() -> None:
    s = Schedule([window(DAILY, "01:30", "02:30")], "America/New_York")
    start, end = s.intervals(date(2025, 3, 9))[0]  # 02:00 -> 03:00: 02:30 does not exist
    assert end - start == 0.5 * H  # ends at the jump
    start, end = s.intervals(date(2025, 11, 2))[0]  # 02:00 -> 01:00: 01:30 happens twice
    assert start == at("America/New_York", 2025, 11, 2, 1, 30, fold=0)
    assert end - start == 2 * H  # 01:30 EDT .. 02:30 EST
    assert s.active(at("America/New_York", 2025, 11, 2, 1, 10, fold=1))  # inside the window, on the second pass


def test_shanghai_has_no_dst_every_window_is_exactly_its_length() -> None:
    s = Schedule([window(DAILY, "22:00", "06:00")])
    lengths = {end - start for d in range(366) for start, end in s.intervals(date(2025, 1, 1) + timedelta(days=d))}
    assert lengths == {8 * H}


def test_quiet_hours_use_the_same_window_model() -> None:
    quiet = QuietHours([window(DAILY, "22:00", "07:00")])
    assert quiet.active(sh(2025, 9, 29, 23, 0))
    assert not quiet.active(sh(2025, 9, 29, 12, 0))


def test_window_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="same time"):
        Window(DAILY, 480, 480)
    with pytest.raises(ValueError, match="end_min"):
        Window(DAILY, 0, MINUTES_PER_DAY + 1)


BERLIN = Schedule(
    [window(WEEKDAYS, "08:00", "12:00"), window(frozenset({4, 5}), "22:00", "02:30"), window(DAILY, "02:15", "03:30")],
    "Europe/Berlin",
    holidays=[date(2025, 10, 3)],
)


@settings(max_examples=150, deadline=None)
@given(st.floats(min_value=at("Europe/Berlin", 2025, 1, 1), max_value=at("Europe/Berlin", 2026, 1, 1)))
def test_next_change_is_where_active_flips(ts: float) -> None:
    change = BERLIN.next_change(ts)
    assert change is not None and change > ts
    before = BERLIN.active(ts)
    assert BERLIN.active(change) != before
    probes = [ts + (change - ts) * f for f in (0.25, 0.5, 0.75, 0.999)]
    assert all(BERLIN.active(p) == before for p in probes)
