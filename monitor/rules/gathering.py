"""The gathering rule: at least N people in a zone for T seconds, with hysteresis and cooldown.

A pure state machine: feed it ``(ts, count)`` in time order and it says when an incident opens,
changes peak, or closes, and whether the announcement may play. No clocks, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal


@dataclass(frozen=True, slots=True)
class GatheringParams:
    """The rule's thresholds (see GatheringRuleConfig for their meaning)."""

    min_people: int
    dwell_s: float
    close_level: int
    clear_s: float
    tolerance_s: float
    cooldown_s: float


@dataclass(frozen=True, slots=True)
class RuleEvent:
    """A transition of the rule's incident."""

    transition: Literal["opened", "peak", "closed"]
    ts: float
    count: int
    peak: int
    announce: bool = False


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
        self.last_announced: float | None = None

    @property
    def active(self) -> bool:
        """Whether an incident is open."""
        return self.phase is _Phase.ACTIVE

    def update(self, ts: float, count: int) -> list[RuleEvent]:
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

    def _pending(self, ts: float, count: int) -> list[RuleEvent]:
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
        announce = self.last_announced is None or ts - self.last_announced >= p.cooldown_s
        if announce:
            self.last_announced = ts
        return [RuleEvent("opened", ts, count, self.peak, announce)]

    def _active(self, ts: float, count: int) -> list[RuleEvent]:
        p = self.params
        if count < p.close_level:
            self.low_since = ts if self.low_since is None else self.low_since
            if ts - self.low_since >= p.clear_s:
                self.phase, self.since, self.low_since = _Phase.IDLE, None, None
                return [RuleEvent("closed", ts, count, self.peak)]
            return []
        self.low_since = None
        if count > self.peak:
            self.peak = count
            return [RuleEvent("peak", ts, count, count)]
        return []
