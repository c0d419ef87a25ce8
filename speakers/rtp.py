"""RTP speaker: streams an announcement as RTP (RFC 3550/3551) over UDP, unicast or IPv4 multicast.

IP speakers and paging amplifiers play such a stream directly, without SIP. The wire format and the real-time
pacing live in ``speakers.rtp_wire``.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import threading

from speakers.audio import Pcm, apply_gain
from speakers.base import SpeakerError, SpeakerHealth
from speakers.config import RtpSpeakerConfig
from speakers.deadline import HEALTH_S, Deadline, check_health
from speakers.rtp_wire import packetize, rtp_format, rtp_packets, send_paced

SETUP_S = 5.0  # resolving the speaker's name (the only step that can block before the stream)


class RtpSpeaker:
    """A speaker reached by an RTP stream (see module docstring)."""

    def __init__(self, name: str, config: RtpSpeakerConfig) -> None:
        self.name = name
        self.config = config
        try:
            self.format = rtp_format(config.codec, config.rate, config.ptime_ms)
        except ValueError as exc:
            raise SpeakerError(f"speaker {name!r} ({self._where}): bad config: {exc}") from exc

    @property
    def sample_rate(self) -> int:
        """8000 for G.711, else the configured L16 rate."""
        return self.format.rate

    @property
    def _label(self) -> str:
        return f"speaker {self.name!r} ({self._where})"

    @property
    def _where(self) -> str:
        return f"rtp {self.config.codec} to {self.config.host}:{self.config.port}"

    def play(self, audio: Pcm, stop: threading.Event) -> None:
        """Stream ``audio`` in real time; returns when its last packet's audio is due at the speaker.

        Setting ``stop`` ends the stream within one packet (PlaybackInterrupted): a higher-priority
        announcement takes the speaker at once. Deadline: the audio's length + SETUP_S + margin.
        """
        if audio.rate != self.sample_rate:
            raise SpeakerError(f"{self._label} needs {self.sample_rate} Hz, got {audio.rate}")
        deadline = Deadline.for_playback(self._label, audio.duration_s, SETUP_S, "to resolve the address")
        deadline.run(lambda: self._stream(apply_gain(audio, self.config.gain_db), stop, deadline), stop)

    def _stream(self, audio: Pcm, stop: threading.Event, deadline: Deadline) -> None:
        packets = list(
            rtp_packets(
                packetize(audio.samples, self.format),
                self.format,
                seq0=secrets.randbits(16),
                ts0=secrets.randbits(32),
                ssrc=secrets.randbits(32),
            )
        )
        try:
            with self._open_socket() as sock:
                deadline.check()  # resolving may have taken it all
                send_paced(sock.send, packets, self.format.ptime_s, sleep=deadline.pacer(stop))
        except OSError as exc:
            raise SpeakerError(f"{self._label}: {exc}") from exc

    def health(self) -> SpeakerHealth:
        """Nothing to ask an RTP speaker: its address resolves (within HEALTH_S)."""
        return check_health(self.name, self._label, HEALTH_S, lambda _: self._resolves())

    def _resolves(self) -> str | None:
        try:
            _resolve_ipv4(self.config.host, self.config.port)
        except OSError as exc:
            return f"speaker {self.name!r}: cannot resolve {self.config.host!r}: {exc}"
        return None

    def _open_socket(self) -> socket.socket:
        """A UDP socket connected to the speaker, so ICMP 'port unreachable' surfaces as ECONNREFUSED."""
        address = _resolve_ipv4(self.config.host, self.config.port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if ipaddress.ip_address(address[0]).is_multicast:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self.config.ttl)
                if self.config.multicast_interface:
                    iface = socket.inet_aton(self.config.multicast_interface)
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, iface)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock


def _resolve_ipv4(host: str, port: int) -> tuple[str, int]:
    """Resolve once per announcement (not per packet); raises socket.gaierror (an OSError)."""
    infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
    ip, resolved_port = infos[0][4][:2]
    return str(ip), int(resolved_port)
