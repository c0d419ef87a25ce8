"""When scheduled broadcasts play: times of day in an IANA zone, on weekdays or given dates, skipping holidays.

Pure, like monitor/rules/schedule.py, whose DST rule it shares (``_instant``): a time that does not exist (spring
forward, 02:30 in Berlin on the last Sunday of March) plays at the instant the clock jumps (03:00 local); a time
that happens twice (fall back) plays once, at its first occurrence.

``due`` is the only question the scheduler asks: which slots fell in (after_ts, now_ts]. Every slot is strictly
after the cursor the caller keeps (the last slot played, or the last time it looked), so none plays twice. A slot
older than ``MISSED_GRACE_S`` is missed for good: after a restart or a stall the broadcast plays at most that
late (a short restart does not swallow the morning announcement; the evening one is not played at breakfast).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from monitor.rules.schedule import _instant

MISSED_GRACE_S = 300.0  # a slot missed by more than this (engine down, clock jump) is not played late
_NEXT_HORIZON_DAYS = 400  # next_slot looks this far ahead (dates may be months away)


@dataclass(frozen=True, slots=True)
class BroadcastTimes:
    """Times of day (minutes after local midnight) on ``days`` (0 = Monday) or only on ``dates``, minus holidays."""

    times_min: tuple[int, ...]
    days: frozenset[int] = frozenset(range(7))
    dates: frozenset[date] = frozenset()
    holidays: frozenset[date] = frozenset()
    timezone: str = "Asia/Shanghai"

    def plays_on(self, day: date) -> bool:
        """Whether the broadcast plays at all on ``day`` (local date)."""
        if day in self.holidays:
            return False
        return day in self.dates if self.dates else day.weekday() in self.days

    def slots_on(self, day: date) -> list[float]:
        """The epoch instants of ``day``'s slots, sorted (DST: see the module docstring)."""
        if not self.plays_on(day):
            return []
        tz = ZoneInfo(self.timezone)
        midnight = datetime.combine(day, datetime.min.time())
        return sorted({_instant(midnight + timedelta(minutes=m), tz) for m in self.times_min})

    def local_date(self, ts: float) -> date:
        """The calendar date at ``ts`` in the broadcast's time zone."""
        return datetime.fromtimestamp(ts, ZoneInfo(self.timezone)).date()


def due(times: BroadcastTimes, after_ts: float, now_ts: float, grace_s: float = MISSED_GRACE_S) -> list[float]:
    """Slots in (after_ts, now_ts] that are at most ``grace_s`` old, oldest first."""
    earliest = max(after_ts, now_ts - grace_s - 1e-6)
    if earliest >= now_ts:
        return []
    day, last = times.local_date(earliest), times.local_date(now_ts)
    out: list[float] = []
    while day <= last:
        out.extend(s for s in times.slots_on(day) if earliest < s <= now_ts)
        day += timedelta(days=1)
    return out


def next_slot(times: BroadcastTimes, after_ts: float) -> float | None:
    """The first slot strictly after ``after_ts``, or None within about a year (past dates only, say)."""
    first = times.local_date(after_ts)
    for i in range(_NEXT_HORIZON_DAYS):
        later = [s for s in times.slots_on(first + timedelta(days=i)) if s > after_ts]
        if later:
            return later[0]
    return None


@dataclass(frozen=True, slots=True)
class Broadcast:
    """One configured broadcast, ready to play: an audio file or a text to speak, on speakers or groups."""

    name: str
    speakers: tuple[str, ...]
    times: BroadcastTimes
    audio: Path | None = None
    text: str | None = None
    voice: str = "cmn-latn-pinyin"
    repeat: int = 1
    gap_s: float = 5.0
    priority: int = -10

    def __post_init__(self) -> None:
        if (self.audio is None) == (self.text is None):
            raise ValueError("a broadcast plays either an audio file or a text")
