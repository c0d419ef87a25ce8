"""ONVIF back-channel speaker: play the announcement on a camera's built-in horn over its own RTSP session.

RTSP DESCRIBE with ``Require: www.onvif.org/ver20/backchannel`` makes an ONVIF camera add a ``sendonly`` audio
track to its SDP (ONVIF Streaming Spec §5.3); the client SETUPs that track, PLAYs, and sends G.711 RTP on it.
The RTP goes interleaved over the RTSP TCP connection (RFC 2326 §10.12): no extra ports to open in a village
router, and it works through the same NAT/port forward as the video. A camera without the feature answers
``551 Option not supported``, which becomes a clear SpeakerError.

Deadlines (``speakers.deadline``): ``timeout_s`` for connecting and the set-up requests together, the audio's
length for the stream, ``timeout_s`` again for the TEARDOWN; a camera that answers one byte at a time has its
connection shut down at the deadline.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from speakers.audio import Pcm, apply_gain
from speakers.base import SpeakerError, SpeakerHealth
from speakers.config import OnvifSpeakerConfig
from speakers.deadline import HEALTH_S, Deadline, check_health, shutdown_socket
from speakers.digest import basic_authorization, digest_authorization, parse_challenges, pick_challenge
from speakers.live import LIVE_BUFFER_S, TALK_MAX_S, LiveFeed, send_live_rtp
from speakers.rtp_wire import G711_RATE, Codec, RtpFormat, packetize, rtp_format, rtp_packets, send_paced

BACKCHANNEL = "www.onvif.org/ver20/backchannel"
DEFAULT_PORT = 554
PTIME_MS = 20
_CODECS: dict[str, Codec] = {"PCMU": "pcmu", "PCMA": "pcma"}
_STATIC_PT: dict[int, str] = {0: "PCMU", 8: "PCMA"}


@dataclass
class RtspResponse:
    """Status, headers (lower-case names) and body of one RTSP response."""

    code: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


@dataclass(frozen=True)
class BackChannel:
    """The camera's sendonly audio track: where to SETUP it and what to send."""

    control: str
    payload_type: int
    codec: Codec


def find_backchannel(sdp: str, base: str) -> BackChannel | None:
    """The first ``m=audio`` section marked ``a=sendonly`` with PCMU or PCMA; None when the camera has none."""
    for section in re.split(r"\r?\n(?=m=)", sdp)[1:]:
        lines = [line.strip() for line in section.splitlines()]
        media = lines[0][2:].split()
        if media[0] != "audio" or "a=sendonly" not in lines:
            continue
        names = dict(_STATIC_PT)
        for line in lines:
            if m := re.match(r"a=rtpmap:(\d+)\s+([\w-]+)/8000", line):
                names[int(m.group(1))] = m.group(2).upper()
        control = next((line[len("a=control:") :] for line in lines if line.startswith("a=control:")), "")
        for pt in (int(p) for p in media[3:] if p.isdigit()):
            if names.get(pt) in _CODECS:
                return BackChannel(_control_url(base, control), pt, _CODECS[names[pt]])
    return None


def _control_url(base: str, control: str) -> str:
    if not control or control == "*":
        return base
    if control.startswith("rtsp://"):
        return control
    return urljoin(base if base.endswith("/") else base + "/", control)


class _RtspConnection:
    """One RTSP/1.0 connection: requests with CSeq, Session and auth; skips interleaved frames in between."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        self.url = urlunsplit(("rtsp", netloc, parts.path or "/", parts.query, ""))  # credentials never go out
        self.sock = socket.create_connection((parts.hostname or "", parts.port or DEFAULT_PORT), timeout=timeout)
        self.buffer = b""
        self.cseq = 0
        self.session: str | None = None
        self.authorization: tuple[list[str], str] | None = None  # (challenge values, scheme) once challenged
        self.nc = 0
        self.lock = threading.Lock()

    def close(self) -> None:
        self.sock.close()

    def request(self, method: str, url: str, headers: dict[str, str] | None = None) -> RtspResponse:
        """Send and wait for the answer; retries once with credentials on 401."""
        response = self._exchange(method, url, headers or {})
        if response.code == 401 and self.username is not None and self.authorization is None:
            self.authorization = (_all_headers(response, "www-authenticate"), "")
            response = self._exchange(method, url, headers or {})
        return response

    def _exchange(self, method: str, url: str, headers: dict[str, str]) -> RtspResponse:
        self.cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self.cseq}", "User-Agent: village-monitor"]
        if self.session:
            lines.append(f"Session: {self.session}")
        if auth := self._auth_header(method, url):
            lines.append(f"Authorization: {auth}")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        with self.lock:
            self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while True:
            response = self._read_response()
            if response.headers.get("cseq", str(self.cseq)) == str(self.cseq):
                return response

    def _auth_header(self, method: str, url: str) -> str | None:
        if self.authorization is None or self.username is None or self.password is None:
            return None
        challenge = pick_challenge(parse_challenges(self.authorization[0]))
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return basic_authorization(self.username, self.password)
        self.nc += 1
        return digest_authorization(challenge, method, url, self.username, self.password, self.nc)

    def send_interleaved(self, channel: int, packet: bytes) -> None:
        with self.lock:
            self.sock.sendall(struct.pack("!cBH", b"$", channel, len(packet)) + packet)

    # -- reading

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the camera closed the RTSP connection")
        self.buffer += data

    def _read_response(self) -> RtspResponse:
        """The next RTSP message, skipping interleaved RTP/RTCP frames the camera sends meanwhile."""
        while True:
            while len(self.buffer) < 4:
                self._fill()
            if self.buffer[:1] == b"$":
                (size,) = struct.unpack("!H", self.buffer[2:4])
                while len(self.buffer) < 4 + size:
                    self._fill()
                self.buffer = self.buffer[4 + size :]
                continue
            while b"\r\n\r\n" not in self.buffer:
                self._fill()
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            response = _parse_head(head.decode("utf-8", errors="replace"))
            length = int(response.headers.get("content-length", "0") or 0)
            while len(rest) < length:
                self._fill()
                rest = self.buffer.partition(b"\r\n\r\n")[2]
            response.body = rest[:length].decode("utf-8", errors="replace")
            self.buffer = rest[length:]
            if response.code:
                return response  # (a request from the camera, e.g. GET_PARAMETER, is ignored)

    def drain_until(self, stop: threading.Event) -> None:
        """Discard what the camera sends (RTCP, its own audio) so its socket buffer never fills and blocks it."""
        self.sock.settimeout(0.2)
        while not stop.is_set():
            try:
                self._fill()
            except TimeoutError:
                continue
            except OSError:
                return
            self._drop_frames()

    def _drop_frames(self) -> None:
        """Remove complete interleaved frames from the front; partial ones stay for the next read."""
        while len(self.buffer) >= 4 and self.buffer[:1] == b"$":
            (size,) = struct.unpack("!H", self.buffer[2:4])
            if len(self.buffer) < 4 + size:
                return
            self.buffer = self.buffer[4 + size :]


def _parse_head(head: str) -> RtspResponse:
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    code = int(parts[1]) if len(parts) > 1 and parts[0].startswith("RTSP/") and parts[1].isdigit() else 0
    response = RtspResponse(code, parts[2] if len(parts) > 2 else "")
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            response.headers[key] = (
                f"{response.headers[key]}\n{value.strip()}" if key in response.headers else value.strip()
            )
    return response


def _format(track: BackChannel) -> RtpFormat:
    """G.711 at PTIME_MS with the payload type the camera's SDP gave the track."""
    fmt = rtp_format(track.codec, None, PTIME_MS)
    return RtpFormat(fmt.codec, track.payload_type, fmt.rate, fmt.samples_per_packet)


_Media = Callable[["_RtspConnection", int, BackChannel, Callable[[float], None]], None]
"""What a session carries once PLAYing: (connection, interleaved channel, track, pacer)."""


def _all_headers(response: RtspResponse, name: str) -> list[str]:
    return [v for v in response.headers.get(name, "").split("\n") if v]


class OnvifSpeaker:
    """A camera's horn via the ONVIF audio back-channel (see module docstring)."""

    def __init__(self, name: str, config: OnvifSpeakerConfig) -> None:
        self.name = name
        self.config = config
        parts = urlsplit(config.url)
        self._where = f"onvif {parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"

    @property
    def sample_rate(self) -> int:
        """G.711 is 8 kHz."""
        return G711_RATE

    @property
    def _label(self) -> str:
        return f"speaker {self.name!r} ({self._where})"

    def error(self, cause: str) -> SpeakerError:
        return SpeakerError(f"{self._label}: {cause}")

    def play(self, audio: Pcm, stop: threading.Event) -> None:
        """DESCRIBE/SETUP/PLAY the back-channel, stream the audio in real time, TEARDOWN; or raise SpeakerError.

        ``stop`` ends the stream within one packet. Deadline: the audio's length + 2 x ``timeout_s`` + margin.
        """
        if audio.rate != G711_RATE:
            raise self.error(f"needs {G711_RATE} Hz audio, got {audio.rate}")
        setup_s = 2 * self.config.timeout_s
        deadline = Deadline.for_playback(self._label, audio.duration_s, setup_s, "for set-up and teardown")
        loud = apply_gain(audio, self.config.gain_db)

        def media(conn: _RtspConnection, channel: int, track: BackChannel, pace: Callable[[float], None]) -> None:
            self._stream(conn, channel, track, loud, pace)

        deadline.run(lambda: self._play(media, stop, deadline), stop)

    @property
    def talk_buffer_s(self) -> float:
        """Once the back-channel plays, packets go out as the audio arrives; at most LIVE_BUFFER_S is held back."""
        return LIVE_BUFFER_S

    def talk(self, feed: LiveFeed, stop: threading.Event) -> None:
        """Set up the back-channel, stream ``feed`` live until it ends, TEARDOWN. Audio during set-up is dropped."""

        def media(conn: _RtspConnection, channel: int, track: BackChannel, pace: Callable[[float], None]) -> None:
            send_live_rtp(lambda p: conn.send_interleaved(channel, p), feed, _format(track), pace, self.config.gain_db)

        deadline = Deadline(2 * self.config.timeout_s + TALK_MAX_S, self._label, "talk")
        deadline.run(lambda: self._play(media, stop, deadline), stop)

    def _play(self, media: _Media, stop: threading.Event, deadline: Deadline) -> None:
        with self._connection(deadline) as conn:
            try:
                self._session(conn, media, stop, deadline)
            except (OSError, ValueError) as exc:
                raise self.error(f"RTSP failed: {type(exc).__name__}: {exc}") from exc

    @contextlib.contextmanager
    def _connection(self, deadline: Deadline) -> Iterator[_RtspConnection]:
        """An RTSP connection the deadline shuts down; closed on the way out (after the hook is gone)."""
        try:
            conn = _RtspConnection(self.config.url, deadline.timeout(self.config.timeout_s))
        except OSError as exc:
            raise self.error(f"cannot connect: {exc}") from exc
        try:
            with deadline.aborting(lambda: shutdown_socket(conn.sock)):
                yield conn
        finally:
            conn.close()

    def _session(self, conn: _RtspConnection, media: _Media, stop: threading.Event, deadline: Deadline) -> None:
        track = self._describe(conn)
        channel = self._setup(conn, track)
        self._expect(conn.request("PLAY", conn.url, {"Range": "npt=0.000-", "Require": BACKCHANNEL}), "PLAY")
        drained = threading.Event()
        reader = threading.Thread(target=conn.drain_until, args=(drained,), daemon=True)
        reader.start()
        try:
            media(conn, channel, track, deadline.pacer(stop))
        finally:
            drained.set()
            reader.join(1.0)
            # The audio is out; a lost TEARDOWN answer only means the camera ends the session on its own.
            with contextlib.suppress(OSError, ValueError, SpeakerError):
                conn.sock.settimeout(deadline.timeout(self.config.timeout_s))
                conn.request("TEARDOWN", conn.url)

    def _describe(self, conn: _RtspConnection) -> BackChannel:
        response = conn.request("DESCRIBE", conn.url, {"Accept": "application/sdp", "Require": BACKCHANNEL})
        if response.code == 551:
            raise self.error("no ONVIF audio back-channel: the camera answered 551 Option not supported")
        self._expect(response, "DESCRIBE")
        base = response.headers.get("content-base") or response.headers.get("content-location") or conn.url
        track = find_backchannel(response.body, base)
        if track is None:
            raise self.error("no ONVIF audio back-channel: the camera's SDP has no sendonly PCMU/PCMA audio track")
        return track

    def _setup(self, conn: _RtspConnection, track: BackChannel) -> int:
        transport = "RTP/AVP/TCP;unicast;interleaved=0-1"
        response = conn.request("SETUP", track.control, {"Transport": transport, "Require": BACKCHANNEL})
        self._expect(response, "SETUP of the back-channel")
        conn.session = response.headers.get("session", "").split(";")[0].strip() or None
        m = re.search(r"interleaved=(\d+)", response.headers.get("transport", ""))
        return int(m.group(1)) if m else 0

    def _stream(
        self, conn: _RtspConnection, channel: int, track: BackChannel, audio: Pcm, pace: Callable[[float], None]
    ) -> None:
        fmt = _format(track)
        ssrc, seq, ts = secrets.randbits(32), secrets.randbits(16), secrets.randbits(32)
        packets = list(rtp_packets(packetize(audio.samples, fmt), fmt, seq, ts, ssrc))
        send_paced(
            lambda p: conn.send_interleaved(channel, p),
            packets,
            fmt.ptime_s,
            sleep=pace,
        )

    def _expect(self, response: RtspResponse, what: str) -> None:
        if response.code == 401:
            raise self.error(f"{what}: 401 Unauthorized (wrong or missing user:pass in the rtsp:// URL)")
        if not 200 <= response.code < 300:
            raise self.error(f"{what} answered {response.code} {response.reason}")

    def health(self) -> SpeakerHealth:
        """An RTSP OPTIONS round trip within min(timeout_s, HEALTH_S); healthy when the camera answers."""
        return check_health(self.name, self._label, min(self.config.timeout_s, HEALTH_S), self._options)

    def _options(self, deadline: Deadline) -> str | None:
        try:
            with self._connection(deadline) as conn:
                response = conn.request("OPTIONS", conn.url)
        except (OSError, ValueError) as exc:
            return str(self.error(f"no answer to OPTIONS: {exc}"))
        return None if response.code < 400 or response.code == 401 else str(self.error(f"OPTIONS: {response.code}"))
