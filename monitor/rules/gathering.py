"""The gathering rule: at least N people in a zone for T seconds, with hysteresis.

A pure state machine: feed it ``(ts, count)`` in time order and it says when an incident opens,
changes peak, or closes. No clocks, no I/O. Whether the announcement plays is the announcement
policy's decision (monitor/rules/policy.py), not this machine's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from monitor.types import Transition


@dataclass(frozen=True, slots=True)
class GatheringParams:
    """The rule's thresholds (see GatheringRuleConfig for their meaning)."""

    min_people: int
    dwell_s: float
    close_level: int
    clear_s: float
    tolerance_s: float


class _Phase(Enum):
    IDLE = "idle"
    PENDING = "pending"  # enough people, waiting for dwell_s
    ACTIVE = "active"  # incident open


class GatheringState:
    """Per-rule state; ``update`` is the whole behaviour."""

    def __init__(self, params: GatheringParams) -> None:
        self.params = params
        self.phase = _Phase.IDLE
        self.since: float | None = None  # start of the current PENDING spell
        self.low_since: float | None = None  # start of a below-threshold spell
        self.peak = 0

    @property
    def active(self) -> bool:
        """Whether an incident is open."""
        return self.phase is _Phase.ACTIVE

    def resume(self, opened_at: float, peak: int) -> None:
        """Carry on an incident opened before a restart (its hysteresis starts afresh)."""
        self.phase, self.since, self.low_since, self.peak = _Phase.ACTIVE, opened_at, None, peak

    def update(self, ts: float, count: int) -> list[Transition]:
        """Advance to ``ts`` having seen ``count`` people; return the transitions this caused."""
        p = self.params
        if self.phase is _Phase.IDLE:
            if count >= p.min_people:
                self.phase, self.since, self.low_since, self.peak = _Phase.PENDING, ts, None, count
            else:
                return []
        if self.phase is _Phase.PENDING:
            return self._pending(ts, count)
        return self._active(ts, count)

    def _pending(self, ts: float, count: int) -> list[Transition]:
        p = self.params
        assert self.since is not None
        if count < p.min_people:
            self.low_since = ts if self.low_since is None else self.low_since
            if ts - self.low_since >= p.tolerance_s:
                self.phase, self.since, self.low_since = _Phase.IDLE, None, None
            return []
        self.low_since = None
        self.peak = max(self.peak, count)
        if ts - self.since < p.dwell_s:
            return []
        self.phase = _Phase.ACTIVE
        return [Transition("opened", ts, count, self.peak)]  # the incident starts when the dwell is met

    def _active(self, ts: float, count: int) -> list[Transition]:
        p = self.params
        if count < p.close_level:
            self.low_since = ts if self.low_since is None else self.low_since
            if ts - self.low_since >= p.clear_s:
                until = self.low_since
                self.phase, self.since, self.low_since = _Phase.IDLE, None, None
                return [Transition("closed", ts, count, self.peak, until=until, reason="cleared")]
            return []
        self.low_since = None
        if count > self.peak:
            self.peak = count
            return [Transition("peak", ts, count, count)]
        return []
