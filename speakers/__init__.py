"""Speaker backends that play dispersal announcements: RTP, SIP paging, HTTP (VAPIX), ONVIF back-channel, local."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from speakers.audio import AnnouncementError, Pcm, apply_gain, load_announcement
from speakers.base import Speaker, SpeakerError
from speakers.config import (
    HttpSpeakerConfig,
    LocalSpeakerConfig,
    OnvifSpeakerConfig,
    RtpSpeakerConfig,
    SipSpeakerConfig,
    SpeakerConfig,
)

__all__ = [
    "AnnouncementError",
    "Pcm",
    "PlaybackInterrupted",
    "Speaker",
    "SpeakerError",
    "apply_gain",
    "create_speaker",
    "interruptible_sleep",
    "load_announcement",
]


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


def create_speaker(name: str, config: SpeakerConfig) -> Speaker:
    """Build the backend for ``config.kind``; backends are imported lazily so RTP-only setups need no PortAudio."""
    if isinstance(config, RtpSpeakerConfig):
        from speakers.rtp import RtpSpeaker

        return RtpSpeaker(name, config)
    if isinstance(config, LocalSpeakerConfig):
        from speakers.local import LocalSpeaker

        return LocalSpeaker(name, config)
    if isinstance(config, SipSpeakerConfig):
        from speakers.sip import SipSpeaker

        return SipSpeaker(name, config)
    if isinstance(config, HttpSpeakerConfig):
        from speakers.http import HttpSpeaker

        return HttpSpeaker(name, config)
    if isinstance(config, OnvifSpeakerConfig):
        from speakers.onvif import OnvifSpeaker

        return OnvifSpeaker(name, config)
    raise TypeError(f"speaker {name!r}: unsupported config type {type(config).__name__}")
