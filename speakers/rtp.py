"""RTP speaker: streams an announcement as RTP (RFC 3550/3551) over UDP, unicast or IPv4 multicast.

IP speakers and paging amplifiers play such a stream directly, without SIP. The wire format and the real-time
pacing live in ``speakers.rtp_wire``.

Health: RTP has no request to answer, so a unicast speaker is probed with empty UDP datagrams on a connected
socket. A host whose receiver is not running answers ICMP "port unreachable", which the socket reports as
ECONNREFUSED (likewise host or network unreachable); silence means no error, the best RTP can tell. An empty
datagram, not an RTCP or RTP packet: no RTP stack takes it for a stream start (which may switch an amplifier on),
and receivers that parse RTP headers drop it as too short. A multicast group answers no one: "unverifiable".
"""

from __future__ import annotations

import dataclasses
import ipaddress
import secrets
import socket
import threading

from speakers.audio import Pcm, apply_gain
from speakers.base import SpeakerError, SpeakerHealth
from speakers.config import RtpSpeakerConfig
from speakers.deadline import HEALTH_S, Deadline, check_health, shutdown_socket
from speakers.live import LIVE_BUFFER_S, TALK_MAX_S, LiveFeed, send_live_rtp
from speakers.rtp_wire import packetize, rtp_format, rtp_packets, send_paced

SETUP_S = 5.0  # resolving the speaker's name (the only step that can block before the stream)
PROBES = 3  # empty datagrams per health check: one lost datagram or ICMP answer does not pass a dead speaker
PROBE_WAIT_S = 0.2  # after each, how long an ICMP error may take to come back (a LAN answers in milliseconds)


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

    @property
    def talk_buffer_s(self) -> float:
        """Packets go out as the audio arrives; at most LIVE_BUFFER_S is held back."""
        return LIVE_BUFFER_S

    def talk(self, feed: LiveFeed, stop: threading.Event) -> None:
        """Stream ``feed`` live (``speakers.live.pace_live``) until it ends; ``stop`` ends it within a packet."""
        deadline = Deadline(SETUP_S + TALK_MAX_S, self._label, "talk")
        deadline.run(lambda: self._talk(feed, stop, deadline), stop)

    def _talk(self, feed: LiveFeed, stop: threading.Event, deadline: Deadline) -> None:
        try:
            with self._open_socket() as sock:
                send_live_rtp(sock.send, feed, self.format, deadline.pacer(stop), self.config.gain_db)
        except OSError as exc:
            raise SpeakerError(f"{self._label}: {exc}") from exc

    def health(self) -> SpeakerHealth:
        """Unicast: probed (see module docstring), within HEALTH_S; multicast: unverifiable once the socket opens."""
        groups: list[str] = []  # the multicast group the check found, if any
        health = check_health(self.name, self._label, HEALTH_S, lambda deadline: self._probe(deadline, groups))
        if health.problem is None and groups:
            why = f"{self._label}: multicast group {groups[0]} answers no one, so the speakers cannot be checked"
            return dataclasses.replace(health, unverifiable=why)
        return health

    def _probe(self, deadline: Deadline, groups: list[str]) -> str | None:
        """The problem, or None: the receiver refused none of PROBES datagrams (or answered one)."""
        try:
            with self._open_socket() as sock, deadline.aborting(lambda: shutdown_socket(sock)):
                host = str(sock.getpeername()[0])
                if ipaddress.ip_address(host).is_multicast:
                    groups.append(host)
                    return None
                for _ in range(PROBES):
                    sock.send(b"")
                    sock.settimeout(deadline.timeout(PROBE_WAIT_S))
                    try:
                        sock.recv(2048)
                    except TimeoutError:
                        continue
                    return None  # it answered (RTCP, say): there is a receiver
        except ConnectionRefusedError:
            return f"{self._label}: nothing receives there (ICMP port unreachable): is the speaker on and listening?"
        except socket.gaierror as exc:
            return f"{self._label}: cannot resolve {self.config.host!r}: {exc}"
        except OSError as exc:
            return f"{self._label}: {exc.strerror or exc} (probe refused)"
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
