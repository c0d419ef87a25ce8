"""When an open incident's announcement plays aloud: cooldown, repeats, escalation, quiet hours, priority.

Shared by every rule that speaks. Per incident the timeline is: the first announcement is due when
the incident opens, each repeat ``repeat_after_s`` after the previous attempt, up to
``max_repeats``; when the next one would be due the incident escalates instead (``needs_attention``:
the loudspeaker did not help, a person must). ``cooldown_s`` spaces any two plays of the rule, also
across incidents; an announcement held back by it stays due and plays once the cooldown is over
if the incident is still open. Inside quiet hours nothing plays, but the attempt counts (so
escalation reaches the center on time) and the decision says ``suppressed: quiet hours``.

Pure: ``decide`` takes the timestamp and the incident's identity (its open time); state is a handful
of numbers per rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.rules.schedule import Schedule

REASON_NO_INCIDENT = "no incident"
REASON_NOT_DUE = "not due"
REASON_QUIET = "suppressed: quiet hours"
REASON_COOLDOWN = "suppressed: cooldown"


@dataclass(frozen=True, slots=True)
class PolicyParams:
    """A rule's announcement settings (see AnnouncementPolicyConfig)."""

    cooldown_s: float = 0.0
    repeat_after_s: float | None = None
    max_repeats: int = 0
    priority: int = 0

    def __post_init__(self) -> None:
        if self.cooldown_s < 0 or self.max_repeats < 0:
            raise ValueError("cooldown_s and max_repeats must not be negative")
        if self.repeat_after_s is not None and self.repeat_after_s <= 0:
            raise ValueError(f"repeat_after_s must be positive, got {self.repeat_after_s}")


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do now. ``attempt``: 1 = the incident's first announcement, 2.. = repeats, 0 = none due."""

    play: bool
    reason: str
    escalate: bool = False
    attempt: int = 0

    @property
    def notable(self) -> bool:
        """Worth recording on the incident (a play, a suppression or an escalation)."""
        return self.play or self.escalate or self.reason.startswith("suppressed")


class AnnouncementPolicy:
    """Per-rule announcement state; call ``decide`` on every observation (or tick) of the rule."""

    def __init__(self, params: PolicyParams, quiet_hours: Schedule | None = None) -> None:
        self.params = params
        self.quiet_hours = quiet_hours
        self.last_played: float | None = None
        self._incident: float | None = None  # open time of the incident being announced
        self._attempts = 0
        self._next_due: float | None = None
        self._escalated = False
        self._cooldown_reported: float | None = None  # due time already reported as held back

    @property
    def priority(self) -> int:
        """The rule's priority when several rules want one speaker (higher wins)."""
        return self.params.priority

    def decide(self, ts: float, incident_open_since: float | None) -> Decision:
        """Whether to play now; ``incident_open_since`` identifies the open incident (None: none open)."""
        if incident_open_since is None:
            self._incident = None
            return Decision(False, REASON_NO_INCIDENT)
        if incident_open_since != self._incident:
            self._start(incident_open_since)
        if self._escalated or self._next_due is None or ts < self._next_due:
            return Decision(False, REASON_NOT_DUE)
        if self._attempts > self.params.max_repeats:
            self._escalated = True
            return Decision(False, f"escalated: still open after {self._attempts} announcement(s)", escalate=True)
        if self.quiet_hours is not None and self.quiet_hours.active(ts):
            self._attempted(ts)
            return Decision(False, REASON_QUIET, attempt=self._attempts)
        if self.last_played is not None and ts - self.last_played < self.params.cooldown_s:
            if self._cooldown_reported == self._next_due:
                return Decision(False, REASON_NOT_DUE)
            self._cooldown_reported = self._next_due
            return Decision(False, REASON_COOLDOWN, attempt=self._attempts + 1)
        self._attempted(ts)
        self.last_played = ts
        reason = "announce" if self._attempts == 1 else f"repeat {self._attempts - 1}/{self.params.max_repeats}"
        return Decision(True, reason, attempt=self._attempts)

    @property
    def escalated(self) -> bool:
        """Whether the current incident has escalated to needs_attention."""
        return self._escalated

    def resume(self, open_since: float, announced_at: float | None) -> None:
        """An incident carried on after a restart: if it was announced, the next play is a repeat, not the first."""
        self._start(open_since)
        if announced_at is not None:
            self._attempted(announced_at)
            self.last_played = announced_at

    def _start(self, open_since: float) -> None:
        self._incident, self._attempts, self._next_due = open_since, 0, open_since
        self._escalated, self._cooldown_reported = False, None

    def _attempted(self, ts: float) -> None:
        self._attempts += 1
        r = self.params.repeat_after_s
        self._next_due = None if r is None else ts + r
