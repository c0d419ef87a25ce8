"""The one seam every speaker backend implements, and the errors and health record it speaks in."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from speakers.audio import Pcm


class SpeakerError(Exception):
    """A speaker could not play an announcement; the message names the speaker and the cause."""


class PlaybackInterrupted(SpeakerError):
    """Playback was stopped on purpose (a higher-priority announcement took the speaker, or shutdown)."""


class DeadlineExceeded(SpeakerError):
    """A speaker operation did not finish within its total deadline (however slowly the device kept answering)."""


@dataclass(frozen=True)
class SpeakerHealth:
    """Result of one health check: ``problem`` is None when the speaker looked fine."""

    speaker: str
    checked_at: float  # time.time()
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


class Speaker(Protocol):
    """A loudspeaker backend (rtp, sip, http, onvif, local).

    Both operations end by a total deadline, whatever the device does (see ``speakers.deadline``).
    """

    name: str

    @property
    def sample_rate(self) -> int:
        """The rate at which this speaker wants its audio (announcements are resampled to it)."""
        ...

    def play(self, audio: Pcm, stop: threading.Event) -> None:
        """Play ``audio`` (already at ``sample_rate``) to the end, or raise SpeakerError.

        Setting ``stop`` ends the playback early with PlaybackInterrupted (checked at least between packets or
        chunks); a playback that has not ended by its deadline raises DeadlineExceeded.
        """
        ...

    def health(self) -> SpeakerHealth:
        """A cheap check that the speaker is there (never raises); ends by its own deadline."""
        ...
