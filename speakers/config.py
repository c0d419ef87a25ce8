"""Config models for speaker backends: one model per ``kind``, a discriminated union."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _SpeakerBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    gain_db: float = Field(0.0, description="Volume change applied to announcements on this speaker, in dB.")


class RtpSpeakerConfig(_SpeakerBase):
    """An IP speaker or amplifier that plays an RTP audio stream sent to it."""

    kind: Literal["rtp"]
    host: str = Field(description="Speaker IP address (unicast) or multicast group.")
    port: int = Field(ge=1, le=65535, description="UDP port the speaker listens on.")
    codec: Literal["pcmu", "pcma", "l16"] = Field("pcmu", description="RTP payload format.")
    rate: int | None = Field(None, description="Sample rate; 8000 for G.711, 16000 or 44100 for L16 (default 16000).")
    ttl: int = Field(1, ge=0, le=255, description="Multicast TTL.")
    ptime_ms: int = Field(20, ge=5, le=120, description="Audio per RTP packet, in milliseconds.")
    multicast_interface: str | None = Field(
        None,
        description="Local IPv4 address to send multicast from (IP_MULTICAST_IF); None = chosen by the routing table.",
    )


class LocalSpeakerConfig(_SpeakerBase):
    """A sound card on the engine's own machine (for example wired into an amplifier)."""

    kind: Literal["local"]
    device: str | int = Field("default", description="PyAudio output device name (substring) or index.")
    rate: int = Field(16000, ge=8000, le=192000, description="Sample rate the device is opened at, in Hz.")


SpeakerConfig = Annotated[RtpSpeakerConfig | LocalSpeakerConfig, Field(discriminator="kind")]
