"""The one seam every speaker backend implements."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from speakers.audio import Pcm


class SpeakerError(Exception):
    """A speaker could not play an announcement; the message names the speaker and the cause."""


class Speaker(Protocol):
    """Plays mono PCM audio; blocks until it was delivered, raises SpeakerError otherwise."""

    name: str

    @property
    def sample_rate(self) -> int:
        """The rate at which this speaker wants its audio (announcements are resampled to it)."""
        ...

    def play(self, audio: Pcm) -> None:
        """Play ``audio`` (already at ``sample_rate``) to the end, or raise SpeakerError."""
        ...


class PlaybackInterrupted(SpeakerError):
    """Playback was stopped on purpose (a higher-priority announcement took the speaker); not a speaker fault."""


def interruptible_sleep(stop: threading.Event | None, what: str) -> Callable[[float], None]:
    """A ``sleep`` for ``speakers.rtp.send_paced`` that raises PlaybackInterrupted as soon as ``stop`` is set.

    Backends that accept ``play(audio, stop=...)`` pace through this, so an interruption ends the stream within
    one packet instead of after the whole announcement.
    """

    def sleep(seconds: float) -> None:
        if stop is None:
            time.sleep(seconds)
        elif stop.wait(seconds):
            raise PlaybackInterrupted(f"{what}: interrupted by a higher-priority announcement")

    return sleep
