"""Config models for speaker backends: one model per ``kind``, a discriminated union."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from speakers.sip_uri import parse_sip_uri


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


class SipSpeakerConfig(_SpeakerBase):
    """A SIP endpoint that auto-answers pages (horn, paging amplifier, intercom); called directly, no registrar."""

    kind: Literal["sip"]
    uri: str = Field(description='Speaker to call, "sip:user@host[:port]" (UDP; port defaults to 5060).')
    codec: Literal["pcmu", "pcma"] = Field("pcmu", description="Preferred codec; both are offered.")
    username: str | None = Field(None, description="Digest user name, used when the speaker answers 401/407.")
    password: str | None = Field(None, repr=False, description="Digest password.")
    timeout_s: float = Field(
        10.0, gt=0, le=300, description="How long the call may ring (a playback's deadline: this + audio + hang-up)."
    )
    ptime_ms: int = Field(20, ge=10, le=60, description="Audio per RTP packet, in milliseconds.")

    @field_validator("uri")
    @classmethod
    def _sip_uri(cls, uri: str) -> str:
        parse_sip_uri(uri)
        return uri


class HttpSpeakerConfig(_SpeakerBase):
    """A network speaker with an Axis VAPIX-style HTTP API: stream mu-law audio or trigger a stored clip."""

    kind: Literal["http"]
    url: str = Field(description="Base URL of the speaker, e.g. https://10.0.0.7 (the VAPIX paths are appended).")
    username: str | None = Field(None, description="User for basic or digest auth (whichever the speaker asks).")
    password: str | None = Field(None, repr=False, description="Password for basic or digest auth.")
    mode: Literal["transmit", "clip"] = Field(
        "transmit", description="transmit: stream the announcement (audio/basic); clip: play a clip stored on it."
    )
    clip: int | None = Field(None, ge=0, description="Clip number on the speaker, for mode: clip.")
    ca_file: Path | None = Field(None, description="PEM file with the CA that signed the speaker's certificate.")
    verify_tls: bool = Field(True, description="Check the speaker's certificate (turn off only on a closed network).")
    timeout_s: float = Field(
        10.0, gt=0, le=300, description="Connecting and all answers together (a playback's deadline: this + audio)."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {url!r}")
        return url

    @model_validator(mode="after")
    def _clip_needs_number(self) -> HttpSpeakerConfig:
        if self.mode == "clip" and self.clip is None:
            raise ValueError("mode: clip needs 'clip' (the clip number stored on the speaker)")
        return self


class OnvifSpeakerConfig(_SpeakerBase):
    """A camera's built-in horn, fed through the ONVIF RTSP audio back-channel."""

    kind: Literal["onvif"]
    url: str = Field(description='RTSP URL of the camera, credentials included: "rtsp://user:pass@cam/stream".')
    timeout_s: float = Field(
        10.0, gt=0, le=300, description="RTSP set-up requests together (a playback's deadline: 2x this + audio)."
    )

    @field_validator("url")
    @classmethod
    def _rtsp_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme != "rtsp" or not parts.hostname:
            raise ValueError(f"must be an rtsp:// URL with a host, got {url!r}")
        return url


SpeakerConfig = Annotated[
    RtpSpeakerConfig | LocalSpeakerConfig | SipSpeakerConfig | HttpSpeakerConfig | OnvifSpeakerConfig,
    Field(discriminator="kind"),
]
