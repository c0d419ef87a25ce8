"""Crash recovery as a pure plan: which incidents a previous run left open are carried on, which are closed.

The outbox holds this engine's own copy of its open incidents, so recovery works with Redis down. A
camera_offline incident is always carried on (it closes when the camera is back: one outage, one incident).
Others are carried on if the engine was back within ``resume_within_s`` (their rule then closes them as usual
when the crowd is gone), else closed with ``closed_by: recovered`` at the time the engine was last alive.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from monitor.incident import Incident, iso

RESUME_WITHIN_S = 120.0


@dataclass(frozen=True, slots=True)
class Recovery:
    """What to do with one incident left open: ``resume`` it, or ``close`` it at ``at`` for ``reason``."""

    incident: Incident
    action: Literal["resume", "close"]
    at: float
    reason: str
    clip_lost: bool  # it has no clip and never will (the ring it was cut from is gone)


def plan_recovery(
    incidents: Iterable[Incident],
    rules: Collection[str],
    now: float,
    last_alive: float | None,
    resume_within_s: float = RESUME_WITHIN_S,
) -> list[Recovery]:
    """Decide for each incident the previous run left open; ``rules`` are the rule ids configured now."""
    plan = []
    for incident in incidents:
        stopped_at = max(last_alive or incident.opened_ts, incident.opened_ts)
        down_s = now - stopped_at
        clip_lost = incident.kind != "camera_offline" and incident.clip is None and "clip_error" not in incident.details
        if incident.rule not in rules:
            reason = "its rule or camera is no longer configured"
            plan.append(Recovery(incident, "close", stopped_at, reason, clip_lost))
        elif incident.kind != "camera_offline" and down_s > resume_within_s:
            reason = f"the engine stopped at {iso(stopped_at)} and was down {down_s:.0f} s: the situation is unknown"
            plan.append(Recovery(incident, "close", stopped_at, reason, clip_lost))
        else:
            plan.append(Recovery(incident, "resume", now, f"resumed after a restart (engine down {down_s:.0f} s)",
                                 clip_lost))  # fmt: skip
    return plan


def last_announced(incident: Incident) -> float | None:
    """When the incident was last announced (decided or played), for the policy's cooldown after a resume.

    The decision is in the timeline before the speaker plays, so a crash during the playback still counts it.
    """
    played = ("announce", "repeat")
    decided = [
        str(entry["at"])
        for entry in incident.timeline
        if entry.get("event") == "announcement_decision" and str(entry.get("reason", "")).startswith(played)
    ]
    times = decided + [a.started_at for a in incident.announcements if a.started_at]
    return max(datetime.fromisoformat(t).timestamp() for t in times) if times else None
