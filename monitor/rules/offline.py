"""The camera-offline rule: no frames for longer than a grace period opens an incident.

Pure: fed ``(now, receiving)`` where ``receiving`` means frames arrived recently. A stalled stream
(socket open, no frames) is simply "not receiving", so it counts as offline like a dead one.
"""

from __future__ import annotations

from monitor.types import Transition


class OfflineState:
    """Tracks one camera; ``update`` returns at most one transition."""

    def __init__(self, grace_s: float, started_at: float) -> None:
        self.grace_s = grace_s
        self.last_seen = started_at  # a camera that never delivers counts from engine start
        self.offline = False
        self.offline_since: float | None = None

    def resume(self, since: float) -> None:
        """Carry on an outage that began before a restart: the incident stays one until the camera is back."""
        self.offline, self.offline_since, self.last_seen = True, since, since

    def update(self, now: float, receiving: bool, last_frame_at: float | None = None) -> list[Transition]:
        """Advance to ``now``; ``last_frame_at`` is when the newest frame arrived, if known."""
        if last_frame_at is not None:
            self.last_seen = max(self.last_seen, last_frame_at)
        if receiving:
            if self.offline:
                self.offline = False
                return [Transition("closed", now, 0, 0, since=self.offline_since, until=now, reason="camera back")]
            return []
        if not self.offline and now - self.last_seen >= self.grace_s:
            self.offline, self.offline_since = True, self.last_seen
            return [Transition("opened", now, 0, 0, since=self.last_seen)]
        return []
