"""The gathering rule with its announcements decided by AnnouncementPolicy (repeats, escalation, quiet hours).

A drop-in successor to using ``GatheringState`` alone: the incident logic is unchanged, and the
``announce`` flag of ``opened`` comes from the policy. One behaviour differs on purpose: an opening
held back by the cooldown is not lost - it plays once the cooldown is over if the crowd is still there.
``GatheringParams.cooldown_s`` is not used here; the policy's ``cooldown_s`` applies.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from monitor.rules.gathering import GatheringParams, GatheringState, RuleEvent
from monitor.rules.policy import AnnouncementPolicy, Decision


@dataclass(frozen=True, slots=True)
class GatheringStep:
    """What one observation caused: incident transitions, and what the speaker should do now."""

    events: list[RuleEvent]
    decision: Decision


class PolicyGatheringState:
    """GatheringState plus an AnnouncementPolicy; ``update`` per observation of the rule's zone."""

    def __init__(self, params: GatheringParams, policy: AnnouncementPolicy) -> None:
        self.state = GatheringState(params)
        self.policy = policy
        self.opened_at: float | None = None

    def update(self, ts: float, count: int) -> GatheringStep:
        """Advance to ``ts`` with ``count`` people (e.g. the largest group's size)."""
        events = self.state.update(ts, count)
        for event in events:
            if event.transition == "opened":
                self.opened_at = event.ts
            elif event.transition == "closed":
                self.opened_at = None
        decision = self.policy.decide(ts, self.opened_at)
        events = [replace(e, announce=decision.play) if e.transition == "opened" else e for e in events]
        return GatheringStep(events, decision)
