"""Speaker health: a cheap periodic check per speaker, so status shows a dead horn before an incident needs it.

Every backend answers ``health() -> SpeakerHealth`` within its own deadline, in one of three states: ok, failed
(with the problem) or unverifiable. The device itself is asked where it can be (SIP OPTIONS, an HTTP request, RTSP
OPTIONS, the sound card is present); a unicast RTP speaker is probed for an ICMP refusal, and a multicast group,
which answers no one, is unverifiable rather than assumed healthy. Each check runs in its own thread, so one slow
speaker does not hold up the others' status.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from speakers.base import HealthState, Speaker, SpeakerHealth

__all__ = ["HealthMonitor", "HealthState", "SpeakerHealth", "check_speaker"]

CLOSE_WAIT_S = 1.0  # close() waits this long in all for checks in flight (bounded by their own deadlines anyway)


def check_speaker(speaker: Speaker) -> SpeakerHealth:
    """One check; a backend that raises (it should not) is reported as unhealthy, never into the status loop."""
    try:
        return speaker.health()
    except Exception as exc:
        problem = f"speaker {speaker.name!r}: health check failed: {type(exc).__name__}: {exc}"
        return SpeakerHealth(speaker.name, time.time(), problem)


class HealthMonitor:
    """Checks every speaker every ``interval_s`` in the background; ``status()`` returns the latest results."""

    def __init__(self, speakers: Mapping[str, Speaker], interval_s: float = 60.0) -> None:
        self.speakers = dict(speakers)
        self.interval_s = interval_s
        self._results: dict[str, SpeakerHealth] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(n, s), name=f"health-{n}", daemon=True)
            for n, s in self.speakers.items()
        ]

    def start(self) -> HealthMonitor:
        for thread in self._threads:
            thread.start()
        return self

    def _loop(self, name: str, speaker: Speaker) -> None:
        while not self._stop.is_set():
            health = check_speaker(speaker)
            with self._lock:
                self._results[name] = health
            self._stop.wait(self.interval_s)

    def status(self) -> dict[str, SpeakerHealth | None]:
        """Latest result per speaker; None for one whose first check has not finished yet."""
        with self._lock:
            return {name: self._results.get(name) for name in self.speakers}

    def close(self) -> None:
        """Stop checking; waits at most CLOSE_WAIT_S in all (a check in flight ends by its deadline on its own)."""
        self._stop.set()
        end = time.monotonic() + CLOSE_WAIT_S
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(max(0.0, end - time.monotonic()))
