"""Weekly duty windows in local wall time (IANA zone), with holidays and make-up days; DST-correct.

A window belongs to the day it starts on: ``22:00-06:00`` on Monday runs from Monday 22:00 to
Tuesday 06:00 local time. It starts the first time the local clock reaches its start and ends the
first time the clock reaches its end, so on DST days:

* spring forward (a wall time that does not exist, e.g. 02:30 in Berlin on the last Sunday in
  March): the boundary moves to the instant the clock jumps (03:00 local) - the window is shorter;
* fall back (a wall time that happens twice): the boundary is its first occurrence - an overnight
  shift ``22:00-06:00`` lasts 9 hours that night, and ``00:00-02:30`` does not restart when the
  clock shows 02:00 again.

Holidays cancel the windows that *start* on that date (a night shift that began the evening before
still ends normally). Extra days (e.g. China's make-up working weekends) run the windows of
``extra_days_like`` (Monday by default) instead of their own weekday's.

Pure: every call takes the timestamp; the only state is a small cache of per-day intervals.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60
DEFAULT_TIMEZONE = "Asia/Shanghai"
_CACHE_DAYS = 8
_HORIZONS_DAYS = (9, 40, 400)  # next_change looks this far ahead, cheapest first

Interval = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Window:
    """On each of ``days`` (0 = Monday), from ``start_min`` to ``end_min`` minutes after local midnight.

    ``end_min`` is 1..1440 (1440 = 24:00); an end at or before the start means the window runs
    past midnight into the next day.
    """

    days: frozenset[int]
    start_min: int
    end_min: int

    def __post_init__(self) -> None:
        if not 0 <= self.start_min < MINUTES_PER_DAY:
            raise ValueError(f"start_min must be in 0..1439, got {self.start_min}")
        if not 0 < self.end_min <= MINUTES_PER_DAY:
            raise ValueError(f"end_min must be in 1..1440, got {self.end_min}")
        if self.start_min == self.end_min:
            raise ValueError("a window must not start and end at the same time (use 00:00-24:00 for all day)")
        if not self.days <= set(range(7)):
            raise ValueError(f"days must be 0 (Monday)..6 (Sunday), got {sorted(self.days)}")

    @property
    def overnight(self) -> bool:
        """Whether the window ends on the day after it starts."""
        return self.end_min <= self.start_min


class Schedule:
    """When something is on (duty hours) in a given time zone; ``active(ts)`` is the question."""

    def __init__(
        self,
        windows: Iterable[Window],
        timezone: str | ZoneInfo = DEFAULT_TIMEZONE,
        holidays: Iterable[date] = (),
        extra_days: Iterable[date] = (),
        extra_days_like: int = 0,
    ) -> None:
        self.windows = tuple(windows)
        self.tz = timezone if isinstance(timezone, ZoneInfo) else ZoneInfo(timezone)
        self.holidays = frozenset(holidays)
        self.extra_days = frozenset(extra_days)
        self.extra_days_like = extra_days_like
        self._cache: dict[date, tuple[Interval, ...]] = {}

    @classmethod
    def always(cls) -> Schedule:
        """Every hour of every day (for rules without a duty schedule)."""
        return cls([Window(frozenset(range(7)), 0, MINUTES_PER_DAY)], "UTC")

    def active(self, ts: float) -> bool:
        """Whether ``ts`` (epoch seconds) falls inside a window."""
        today = self.local_date(ts)
        return any(start <= ts < end for day in (today - timedelta(days=1), today) for start, end in self._cached(day))

    def next_change(self, ts: float) -> float | None:
        """The first instant after ``ts`` at which ``active`` flips, or None within about a year."""
        first = self.local_date(ts) - timedelta(days=1)
        for horizon in _HORIZONS_DAYS:
            merged = _merge(iv for i in range(horizon) for iv in self.intervals(first + timedelta(days=i)))
            limit = _instant(datetime.combine(first + timedelta(days=horizon), datetime.min.time()), self.tz)
            change = _next_boundary(merged, ts)
            if change is not None and change < limit:
                return change
        return None

    def local_date(self, ts: float) -> date:
        """The calendar date at ``ts`` in the schedule's time zone."""
        return datetime.fromtimestamp(ts, self.tz).date()

    def intervals(self, day: date) -> tuple[Interval, ...]:
        """[start, end) epoch-second intervals of the windows that start on ``day``."""
        if day in self.holidays:
            return ()
        weekday = self.extra_days_like if day in self.extra_days else day.weekday()
        midnight = datetime.combine(day, datetime.min.time())
        out = []
        for w in self.windows:
            if weekday not in w.days:
                continue
            end_min = w.end_min + (MINUTES_PER_DAY if w.overnight else 0)
            start = _instant(midnight + timedelta(minutes=w.start_min), self.tz)
            end = _instant(midnight + timedelta(minutes=end_min), self.tz)
            if end > start:  # both ends inside one DST gap: nothing left of the window
                out.append((start, end))
        return tuple(out)

    def _cached(self, day: date) -> tuple[Interval, ...]:
        found = self._cache.get(day)
        if found is None:
            if len(self._cache) >= _CACHE_DAYS:
                self._cache.clear()
            found = self._cache[day] = self.intervals(day)
        return found


class QuietHours(Schedule):
    """Times when nothing is played aloud (incidents are still logged); same window model as duty."""


def _instant(wall: datetime, tz: ZoneInfo) -> float:
    """Epoch seconds when the local clock first reads ``wall`` or later (naive ``wall``)."""
    first = wall.replace(tzinfo=tz, fold=0).timestamp()
    second = wall.replace(tzinfo=tz, fold=1).timestamp()
    if first <= second:  # an ordinary time (equal) or one that happens twice (fold=0 is the earlier)
        return first
    return _transition(second, first, tz)  # in a DST gap: the instant the clock jumps over it


def _transition(before: float, after: float, tz: ZoneInfo) -> float:
    """The first whole second in (before, after] that has ``after``'s UTC offset (bisection)."""
    target = datetime.fromtimestamp(after, tz).utcoffset()
    lo, hi = int(before), int(after)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return float(hi)


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted union of half-open intervals, touching ones joined."""
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _next_boundary(merged: list[Interval], ts: float) -> float | None:
    for start, end in merged:
        if start <= ts < end:
            return end
        if start > ts:
            return start
    return None
