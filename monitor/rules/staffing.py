"""The checkpoint-staffing rule: fewer than K people in a zone for T seconds of duty -> an incident.

A pure state machine fed ``(ts, count)`` in time order, with a duty schedule. Phases:
``staffed`` -> (short of staff) -> ``short`` -> (still short ``unstaffed_s`` after it began) -> ``open``
-> (staffed again continuously for ``restored_s``) -> ``staffed``, emitting ``closed``.

* Missed detections: the zone counts as staffed while at least K people were seen within the last
  ``tolerance_s`` (a max filter), so a detector that flickers on a present guard never starts the
  timer, and the shortfall is dated from the first observation without them.
* Passers-by: leaving ``short`` (like closing) needs staffing back for ``restored_s``; someone
  crossing the zone for a few seconds does not reset the unstaffed timer.
* Outside duty hours nothing fires; an open incident closes when the duty window ends
  (``reason="off_duty"``, ``until`` = the window's end), and each window starts from ``staffed``.
* Detection gaps: when more than ``max_gap_s`` passes between two observations (camera offline,
  detector stalled) nobody knows who was there, so no timer runs across the gap: an unstaffed
  timer starts again at the first observation after it, and an open incident stays open with its
  restored timer restarted. A camera outage alone therefore never opens ``checkpoint_unstaffed``
  (that is the camera_offline rule's job) and never closes one either.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from monitor.rules.schedule import Schedule
from monitor.types import Transition

KIND = "checkpoint_unstaffed"


@dataclass(frozen=True, slots=True)
class StaffingParams:
    """The rule's thresholds (see StaffingRuleConfig)."""

    min_staff: int
    unstaffed_s: float
    restored_s: float = 10.0
    tolerance_s: float = 3.0
    max_gap_s: float = 10.0


class _Phase(Enum):
    STAFFED = "staffed"
    SHORT = "short"  # fewer than min_staff, waiting for unstaffed_s
    OPEN = "open"  # incident open


class StaffingState:
    """Per-rule state (a few numbers); ``update`` per observation, ``tick`` between them (duty end)."""

    def __init__(self, params: StaffingParams, schedule: Schedule | None = None) -> None:
        self.params = params
        self.schedule = schedule or Schedule.always()
        self.phase = _Phase.STAFFED
        self.since: float | None = None  # when the current shortfall began
        self.ok_since: float | None = None  # start of the current staffed spell while short or open
        self.last_ok: float | None = None  # last observation with at least min_staff people
        self.low_start: float | None = None  # first observation short of staff after last_ok
        self.lowest = 0
        self.last_ts: float | None = None
        self.last_on_duty: float | None = None

    @property
    def open(self) -> bool:
        """Whether a checkpoint_unstaffed incident is open."""
        return self.phase is _Phase.OPEN

    def update(self, ts: float, count: int) -> list[Transition]:
        """Advance to ``ts`` having seen ``count`` people in the checkpoint zone."""
        gap = self.last_ts is not None and ts - self.last_ts > self.params.max_gap_s
        self.last_ts = ts
        if not self.schedule.active(ts):
            return self._off_duty(ts, count)
        self.last_on_duty = ts
        if gap:
            self._forget_gap()
        staffed = self._staffed(ts, count)
        if self.phase is _Phase.STAFFED:
            if staffed:
                return []
            self.phase, self.since, self.lowest = _Phase.SHORT, self.low_start, count
        if staffed:
            return self._staffed_spell(ts, count)
        self.ok_since = None
        self.lowest = min(self.lowest, count)
        assert self.since is not None
        if self.phase is _Phase.SHORT and ts - self.since >= self.params.unstaffed_s:
            self.phase = _Phase.OPEN
            return [Transition("opened", ts, count, self.lowest, since=self.since)]
        return []

    def tick(self, ts: float) -> list[Transition]:
        """Advance the clock without an observation: closes an open incident when duty has ended."""
        if self.schedule.active(ts):
            return []
        return self._off_duty(ts, None)

    def _staffed(self, ts: float, count: int) -> bool:
        """Enough people now, or seen within tolerance_s (max filter over missed detections)."""
        if count >= self.params.min_staff:
            self.last_ok, self.low_start = ts, None
            return True
        self.low_start = ts if self.low_start is None else self.low_start
        return self.last_ok is not None and ts - self.last_ok < self.params.tolerance_s

    def _staffed_spell(self, ts: float, count: int) -> list[Transition]:
        """Short or open, and people are there: back to staffed once it has lasted restored_s."""
        self.ok_since = ts if self.ok_since is None else self.ok_since
        if ts - self.ok_since < self.params.restored_s:
            return []
        events = []
        if self.phase is _Phase.OPEN:
            assert self.since is not None
            events.append(self._closed(ts, count, self.ok_since, "restored"))
        self._reset()
        return events

    def _off_duty(self, ts: float, count: int | None) -> list[Transition]:
        events = []
        if self.phase is _Phase.OPEN:
            assert self.since is not None
            shown = self.lowest if count is None else count
            events.append(self._closed(ts, shown, self._duty_end(ts), "off_duty"))
        self._reset()
        self.last_ok = self.low_start = None
        return events

    def _closed(self, ts: float, count: int, until: float | None, reason: str) -> Transition:
        """Staffing restored or duty over: ``peak`` is the fewest staff seen during the incident."""
        assert self.since is not None
        duration = None if until is None else until - self.since
        details = {"since": self.since, "until": until, "lowest": self.lowest, "reason": reason, "duration_s": duration}
        return Transition("closed", ts, count, self.lowest, self.since, until, reason, details)

    def resume(self, since: float, lowest: int) -> None:
        """Carry on an incident opened before a restart."""
        self.phase, self.since, self.lowest, self.ok_since = _Phase.OPEN, since, lowest, None

    def _duty_end(self, ts: float) -> float:
        """When the duty window that held the incident ended (at most ``ts``)."""
        end = None if self.last_on_duty is None else self.schedule.next_change(self.last_on_duty)
        return ts if end is None else min(end, ts)

    def _forget_gap(self) -> None:
        """Nothing seen for too long: no timer may run across the gap."""
        self.last_ok = self.low_start = self.ok_since = None
        if self.phase is _Phase.SHORT:
            self._reset()

    def _reset(self) -> None:
        self.phase, self.since, self.ok_since, self.lowest = _Phase.STAFFED, None, None, 0
