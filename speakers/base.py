"""The one seam every speaker backend implements, and the errors and health record it speaks in."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from speakers.audio import Pcm

if TYPE_CHECKING:
    from speakers.live import LiveFeed


class SpeakerError(Exception):
    """A speaker could not play an announcement; the message names the speaker and the cause."""


class PlaybackInterrupted(SpeakerError):
    """Playback was stopped on purpose (a higher-priority announcement took the speaker, or shutdown)."""


class DeadlineExceeded(SpeakerError):
    """A speaker operation did not finish within its total deadline (however slowly the device kept answering)."""


HealthState = Literal["ok", "failed", "unverifiable"]


@dataclass(frozen=True)
class SpeakerHealth:
    """Result of one health check: ``problem`` says why it failed; None when the speaker looked fine.

    ``unverifiable`` (never set together with ``problem``) says why nothing could be asked: a multicast RTP group
    answers no one, so "no error" there proves nothing and must not be shown as healthy.
    """

    speaker: str
    checked_at: float  # time.time()
    problem: str | None
    unverifiable: str | None = None

    @property
    def ok(self) -> bool:
        """The device was checked and answered (or at least did not refuse)."""
        return self.problem is None and self.unverifiable is None

    @property
    def state(self) -> HealthState:
        """ok, failed, or unverifiable: three answers, so an unchecked speaker never reads as a healthy one."""
        if self.problem is not None:
            return "failed"
        return "ok" if self.unverifiable is None else "unverifiable"


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


@runtime_checkable
class Talker(Protocol):
    """A speaker that takes live audio as it is spoken (talk-down from the web page); every backend is one."""

    name: str

    @property
    def sample_rate(self) -> int:
        """The rate its live feed carries."""
        ...

    @property
    def talk_buffer_s(self) -> float:
        """How much audio its feed may hold back: the most delay it adds (HTTP: a phrase, see speakers.http)."""
        ...

    def talk(self, feed: LiveFeed, stop: threading.Event) -> None:
        """Play ``feed`` as it arrives until it ends (returns once the rest is out), or raise SpeakerError.

        Counts what it sent in ``feed.stats``. ``stop`` aborts (PlaybackInterrupted); set-up failures raise at once.
        """
        ...
