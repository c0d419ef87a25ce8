"""Speaker backends that play dispersal announcements: RTP, SIP paging, HTTP (VAPIX), ONVIF back-channel, local."""

from __future__ import annotations

from speakers.audio import AnnouncementError, Pcm, apply_gain, load_announcement
from speakers.base import DeadlineExceeded, PlaybackInterrupted, Speaker, SpeakerError, SpeakerHealth
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
    "DeadlineExceeded",
    "Pcm",
    "PlaybackInterrupted",
    "Speaker",
    "SpeakerError",
    "SpeakerHealth",
    "apply_gain",
    "create_speaker",
    "load_announcement",
]


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
