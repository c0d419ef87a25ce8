"""Time for the engine, injected: the system clock in production, a manual one in tests.

Rules take their time from frames (``Frame.ts``: arrival for live cameras, paced media time for files);
everything the engine does on a timer (rule ticks, health, heartbeats, timeline entries) asks a ``Clock``.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Wall time (seconds since the epoch) and a monotonic time for intervals."""

    def now(self) -> float:
        """Seconds since the epoch."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """``time.time()``."""
        return time.time()

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told (tests that step time instead of sleeping)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """The current manual time."""
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        """Moves with ``advance``."""
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        with self._lock:
            self._now += seconds
            self._mono += seconds
