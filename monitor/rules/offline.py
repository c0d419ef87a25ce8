"""The camera-offline rule: no frames for longer than a grace period opens an incident.

Pure: fed ``(now, receiving)`` where ``receiving`` means frames arrived recently. A stalled stream
(socket open, no frames) is simply "not receiving", so it counts as offline like a dead one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class OfflineEvent:
    """The camera went offline (``opened``, with the time it was last seen) or came back (``closed``)."""

    transition: Literal["opened", "closed"]
    ts: float
    since: float


class OfflineState:
    """Tracks one camera; ``update`` returns at most one transition."""

    def __init__(self, grace_s: float, started_at: float) -> None:
        self.grace_s = grace_s
        self.last_seen = started_at  # a camera that never delivers counts from engine start
        self.offline = False

    def update(self, now: float, receiving: bool, last_frame_at: float | None = None) -> list[OfflineEvent]:
        """Advance to ``now``; ``last_frame_at`` is when the newest frame arrived, if known."""
        if last_frame_at is not None:
            self.last_seen = max(self.last_seen, last_frame_at)
        if receiving:
            if self.offline:
                self.offline = False
                return [OfflineEvent("closed", now, self.last_seen)]
            return []
        if not self.offline and now - self.last_seen >= self.grace_s:
            self.offline = True
            return [OfflineEvent("opened", now, self.last_seen)]
        return []
