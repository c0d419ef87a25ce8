"""Speaker backends that play dispersal announcements: RTP (IP speakers) and local sound devices."""

from __future__ import annotations

from speakers.audio import AnnouncementError, Pcm, apply_gain, load_announcement
from speakers.base import Speaker, SpeakerError
from speakers.config import LocalSpeakerConfig, RtpSpeakerConfig, SpeakerConfig

__all__ = [
    "AnnouncementError",
    "Pcm",
    "Speaker",
    "SpeakerError",
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
    raise TypeError(f"speaker {name!r}: unsupported config type {type(config).__name__}")
