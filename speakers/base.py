"""The one seam every speaker backend implements."""

from __future__ import annotations

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
