"""Speaker health: a cheap periodic check per speaker, so status shows a dead horn before an incident needs it.

Backends that can ask the device itself provide ``health() -> str | None`` (SIP OPTIONS, HTTP request, RTSP
OPTIONS); for the others a local check stands in (RTP: the address resolves; local: the device is present).
Each check runs in its own thread, so one hanging speaker does not hold up the others' status.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from speakers.base import Speaker


@dataclass(frozen=True)
class SpeakerHealth:
    """Result of the latest check: ``problem`` is None when the speaker looked fine."""

    speaker: str
    checked_at: float
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def check_speaker(speaker: Speaker) -> str | None:
    """One check: the backend's own ``health()`` if it has one, else a local stand-in; None means healthy."""
    own: Callable[[], str | None] | None = getattr(speaker, "health", None)
    try:
        if own is not None:
            return own()
        return _fallback(speaker)
    except Exception as exc:  # a check must report, never raise into the status loop
        return f"speaker {speaker.name!r}: health check failed: {type(exc).__name__}: {exc}"


def _fallback(speaker: Speaker) -> str | None:
    from speakers.local import LocalSpeaker, list_output_devices, select_output_device
    from speakers.rtp import RtpSpeaker

    if isinstance(speaker, RtpSpeaker):
        try:
            socket.getaddrinfo(speaker.config.host, speaker.config.port, socket.AF_INET, socket.SOCK_DGRAM)
        except OSError as exc:
            return f"speaker {speaker.name!r}: cannot resolve {speaker.config.host!r}: {exc}"
        return None
    if isinstance(speaker, LocalSpeaker):
        devices = list_output_devices()
        try:
            select_output_device(devices, speaker.config.device, devices[0][0] if devices else None)
        except LookupError as exc:
            return f"speaker {speaker.name!r} (local): {exc}"
        return None
    return None  # nothing cheap to ask


class HealthMonitor:
    """Checks every speaker every ``interval_s`` in the background; ``status()`` returns the latest results."""

    def __init__(self, speakers: Mapping[str, Speaker], interval_s: float = 60.0) -> None:
        self.speakers = dict(speakers)
        self.interval_s = interval_s
        self._results: dict[str, SpeakerHealth] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(s,), name=f"health-{n}", daemon=True)
            for n, s in self.speakers.items()
        ]

    def start(self) -> HealthMonitor:
        for thread in self._threads:
            thread.start()
        return self

    def _loop(self, speaker: Speaker) -> None:
        while not self._stop.is_set():
            problem = check_speaker(speaker)
            with self._lock:
                self._results[speaker.name] = SpeakerHealth(speaker.name, time.time(), problem)
            self._stop.wait(self.interval_s)

    def status(self) -> dict[str, SpeakerHealth | None]:
        """Latest result per speaker; None for one whose first check has not finished yet."""
        with self._lock:
            return {name: self._results.get(name) for name in self.speakers}

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(1.0)
