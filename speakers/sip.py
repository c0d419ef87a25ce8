"""SIP paging speaker: call a horn that auto-answers, stream the announcement as RTP, hang up.

A small user agent client for exactly this flow (RFC 3261 over UDP, no registrar): INVITE with an SDP offer
(PCMU, PCMA) -> 1xx -> 2xx -> ACK -> paced RTP to the address in the SDP answer -> BYE. It retransmits the INVITE
(timer A, T1 = 500 ms, doubling) until the first response, answers 401/407 with digest credentials once,
CANCELs a call that rings past ``timeout_s``, and turns every failure into a SpeakerError that says what the
speaker did (busy, declined, no answer, unreachable). Libraries were considered: pyVoIP needs a registrar and
imports audioop; a direct page needs ~300 lines, which are tested here against sipp.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from speakers.audio import Pcm, apply_gain
from speakers.base import PlaybackInterrupted, SpeakerError, SpeakerHealth
from speakers.config import SipSpeakerConfig
from speakers.deadline import HEALTH_S, Deadline, check_health
from speakers.digest import Challenge, digest_authorization, parse_challenges
from speakers.live import LIVE_BUFFER_S, TALK_MAX_S, LiveFeed, send_live_rtp
from speakers.rtp_wire import G711_RATE, Codec, packetize, rtp_format, rtp_packets, send_paced
from speakers.sip_uri import parse_sip_uri

log = logging.getLogger(__name__)

Media = Callable[[socket.socket, tuple[str, int], Codec, Callable[[float], None], Callable[[], None]], None]
"""What a call carries: (RTP socket, destination, codec, pacer, check that the speaker has not hung up)."""

T1 = 0.5  # RFC 3261 round-trip estimate; INVITE retransmits at T1, 2*T1, 4*T1, ...
T2 = 4.0  # cap of the non-INVITE (BYE, OPTIONS) retransmit interval
BYE_TIMEOUT_S = 4.0  # the audio was delivered already; a lost BYE answer is only logged as a failure of the hang-up
CANCEL_WAIT_S = 0.5  # how long a cancelled call waits for its 487 before reporting "no answer"
STOP_POLL_S = 0.1  # while a call rings, how often the stop event is looked at
PAYLOAD_TYPES: dict[Codec, int] = {"pcmu": 0, "pcma": 8}
CODEC_NAMES = {0: "PCMU", 8: "PCMA"}
_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
            "c": "content-type"}  # fmt: skip
_REASONS = {486: "busy", 600: "busy", 603: "declined", 480: "temporarily unavailable", 404: "unknown user",
            403: "forbidden", 488: "does not accept PCMU/PCMA", 487: "cancelled"}  # fmt: skip


# ---------------------------------------------------------------------------------------------- messages


@dataclass
class SipMessage:
    """A parsed SIP request or response (header names lower case, compact forms expanded)."""

    start: str
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: str = ""

    @property
    def is_response(self) -> bool:
        return self.start.startswith("SIP/2.0 ")

    @property
    def code(self) -> int:
        return int(self.start.split()[1]) if self.is_response else 0

    @property
    def reason(self) -> str:
        return self.start.split(" ", 2)[2] if self.is_response and self.start.count(" ") >= 2 else ""

    @property
    def method(self) -> str:
        return "" if self.is_response else self.start.split(" ", 1)[0]

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else ""

    @property
    def cseq(self) -> tuple[int, str]:
        number, _, method = self.header("cseq").partition(" ")
        return (int(number) if number.isdigit() else -1), method.strip()


def parse_message(data: bytes) -> SipMessage | None:
    """Parse one datagram; None for garbage (keep-alive CRLFs, truncated packets)."""
    text = data.decode("utf-8", errors="replace")
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    if not lines or not (lines[0].startswith("SIP/2.0 ") or lines[0].endswith(" SIP/2.0")):
        return None
    msg = SipMessage(lines[0].strip(), body=body)
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            msg.headers.setdefault(_COMPACT.get(key, key), []).append(value.strip())
    if msg.is_response and not re.fullmatch(r"SIP/2\.0 \d{3}( .*)?", msg.start):
        return None
    return msg


def build_message(start: str, headers: list[tuple[str, str]], body: str = "", content_type: str = "") -> bytes:
    lines = [start, *(f"{k}: {v}" for k, v in headers)]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def sdp_offer(ip: str, rtp_port: int, preferred: Codec, ptime_ms: int) -> str:
    """Audio-only offer, both G.711 laws, preferred first; sendonly because a page never listens back."""
    pts = sorted(PAYLOAD_TYPES.values(), key=lambda pt: pt != PAYLOAD_TYPES[preferred])
    session = secrets.randbelow(2**31)
    lines = [
        "v=0",
        f"o=village-monitor {session} {session} IN IP4 {ip}",
        "s=announcement",
        f"c=IN IP4 {ip}",
        "t=0 0",
        f"m=audio {rtp_port} RTP/AVP {' '.join(map(str, pts))}",
        *(f"a=rtpmap:{pt} {CODEC_NAMES[pt]}/8000" for pt in pts),
        f"a=ptime:{ptime_ms}",
        "a=sendonly",
    ]
    return "\r\n".join(lines) + "\r\n"


def parse_sdp_answer(sdp: str, preferred: Codec | None = None) -> tuple[tuple[str, int], Codec]:
    """(RTP destination, codec) from the speaker's answer; ValueError when it accepted no usable audio.

    The configured codec wins when the answer accepts it (any listed format may be sent, RFC 3264 §6.1);
    otherwise the answerer's first G.711 format.
    """
    session_ip: str | None = None
    media_ip: str | None = None
    port, pts = 0, []
    in_audio = False
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            parts = line[2:].split()
            in_audio = parts[0] == "audio" and port == 0
            if in_audio:
                port, pts = int(parts[1]), [int(p) for p in parts[3:] if p.isdigit()]
        elif line.startswith("c=") and line.split()[-1:]:
            address = line.split()[-1].split("/")[0]
            if in_audio:
                media_ip = address
            elif port == 0:
                session_ip = address
    ip = media_ip or session_ip
    if not port:
        raise ValueError("the answer has no (or a rejected) audio stream")
    if not ip or ip == "0.0.0.0":
        raise ValueError("the answer has no connection address")
    if preferred is not None and PAYLOAD_TYPES[preferred] in pts:
        return (ip, port), preferred
    for pt in pts:
        for codec, number in PAYLOAD_TYPES.items():
            if pt == number:
                return (ip, port), codec
    raise ValueError(f"the answer accepts neither PCMU nor PCMA (payload types {pts})")


# ---------------------------------------------------------------------------------------------- the call


class _Call:
    """One dialog from INVITE to BYE on its own UDP socket (connected, so ICMP errors surface)."""

    def __init__(
        self, speaker: SipSpeaker, sock: socket.socket, target: tuple[str, int], stop: threading.Event | None = None
    ) -> None:
        self.speaker, self.cfg, self.sock, self.target = speaker, speaker.config, sock, target
        self.stop = stop or threading.Event()
        self.uri = speaker.uri
        self.local_ip, self.local_port = sock.getsockname()[:2]
        self.call_id = f"{secrets.token_hex(12)}@{self.local_ip}"
        self.tag = secrets.token_hex(6)
        self.cseq = 0
        self.remote_to = f"<{self.uri}>"
        self.remote_target = str(self.uri)
        self.remote_bye = threading.Event()
        self._listening = False

    # -- building and sending

    def request(
        self,
        method: str,
        branch: str,
        cseq: int,
        extra: list[tuple[str, str]] | None = None,
        body: str = "",
        in_dialog: bool = False,
        to: str | None = None,
    ) -> bytes:
        """A request of this call; in-dialog ones (ACK of a 2xx, BYE) go to the speaker's Contact and To tag."""
        uri = self.remote_target if in_dialog else str(self.uri)
        headers = [
            ("Via", f"SIP/2.0/UDP {self.local_ip}:{self.local_port};branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:village-monitor@{self.local_ip}>;tag={self.tag}"),
            ("To", to or (self.remote_to if in_dialog else f"<{self.uri}>")),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", f"<sip:village-monitor@{self.local_ip}:{self.local_port}>"),
            ("User-Agent", "village-monitor"),
            *(extra or []),
        ]
        return build_message(f"{method} {uri} SIP/2.0", headers, body, "application/sdp" if body else "")

    def send(self, data: bytes) -> None:
        self.sock.send(data)

    def receive(self, timeout: float) -> SipMessage | None:
        """The next SIP message of this call within ``timeout``; None on timeout. Answers stray requests."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65535)
        except TimeoutError:
            return None
        msg = parse_message(data)
        if msg is None or msg.header("call-id") != self.call_id:
            return None
        if not msg.is_response:
            self.answer_request(msg)
            return None
        return msg

    def answer_request(self, msg: SipMessage) -> None:
        """The speaker hanging up (BYE) or probing us (OPTIONS): answer 200 so it does not retransmit."""
        if msg.method == "ACK":
            return
        if msg.method == "BYE":
            self.remote_bye.set()
        headers = [(k.title(), v) for k in ("via", "from", "to", "call-id", "cseq") for v in msg.headers.get(k, [])]
        self.send(build_message("SIP/2.0 200 OK", headers))

    # -- INVITE transaction

    def invite(self, sdp: str) -> SipMessage:
        """INVITE until a final response; one digest retry; returns the 2xx (already ACKed) or raises."""
        authorization: list[tuple[str, str]] = []
        deadline = time.monotonic() + self.cfg.timeout_s
        while True:
            self.cseq += 1
            branch = _branch()
            invite = self.request("INVITE", branch, self.cseq, authorization, sdp)
            final = self._invite_transaction(invite, branch, deadline)
            if 200 <= final.code < 300:
                self._learn_dialog(final)
                self.send(self.request("ACK", _branch(), self.cseq, in_dialog=True))
                return final
            self._ack_failure(final, branch)
            if final.code in (401, 407) and not authorization:
                authorization = [self._credentials(final)]
                continue
            raise self.speaker.error(_describe_failure(final, bool(authorization)))

    def _invite_transaction(self, invite: bytes, branch: str, deadline: float) -> SipMessage:
        """Timer A retransmission until a provisional answer; CANCEL at the deadline if it rang."""
        interval, provisional = T1, False
        self.send(invite)
        next_send = time.monotonic() + interval
        while True:
            now = time.monotonic()
            if self.stop.is_set():
                if provisional:
                    self._cancel(branch)
                raise PlaybackInterrupted(f"{self.speaker.label}: interrupted on request while calling")
            if now >= deadline:
                if provisional:
                    self._cancel(branch)
                    raise self.speaker.error(f"no answer within {self.cfg.timeout_s:g} s (it rang; call cancelled)")
                raise self.speaker.error(
                    f"no response from {self.target[0]}:{self.target[1]} within {self.cfg.timeout_s:g} s "
                    "(unreachable, wrong port, or not a SIP device)"
                )
            if not provisional and now >= next_send:
                self.send(invite)
                interval *= 2
                next_send = now + interval
            wait = deadline - now if provisional else min(deadline, next_send) - now
            msg = self.receive(min(wait, STOP_POLL_S))
            if msg is None or msg.cseq != (self.cseq, "INVITE"):
                continue
            if msg.code < 200:
                provisional = True
                continue
            return msg

    def _learn_dialog(self, final: SipMessage) -> None:
        self.remote_to = final.header("to") or self.remote_to
        contact_header = final.header("contact")
        contact = re.search(r"<([^>]+)>", contact_header) or re.match(r"\s*(sip:[^;\s]+)", contact_header)
        if contact:
            self.remote_target = contact.group(1)

    def _ack_failure(self, final: SipMessage, branch: str) -> None:
        """Non-2xx finals are ACKed in the INVITE's transaction (same branch, their To tag)."""
        self.send(self.request("ACK", branch, self.cseq, to=final.header("to") or None))

    def _credentials(self, challenge_response: SipMessage) -> tuple[str, str]:
        proxy = challenge_response.code == 407
        header = "proxy-authenticate" if proxy else "www-authenticate"
        if self.cfg.username is None or self.cfg.password is None:
            raise self.speaker.error(f"{challenge_response.code} {challenge_response.reason}: needs username/password")
        challenges = [c for c in parse_challenges(challenge_response.headers.get(header, [])) if c.scheme == "digest"]
        if not challenges:
            raise self.speaker.error(f"{challenge_response.code} without a digest challenge")
        try:
            value = self._digest(challenges[0])
        except ValueError as exc:
            raise self.speaker.error(f"{challenge_response.code}: {exc}") from exc
        return ("Proxy-Authorization" if proxy else "Authorization"), value

    def _digest(self, challenge: Challenge) -> str:
        assert self.cfg.username is not None and self.cfg.password is not None
        return digest_authorization(challenge, "INVITE", str(self.uri), self.cfg.username, self.cfg.password)

    def _cancel(self, branch: str) -> None:
        """Stop the ringing; ACK the 487 if it comes, but do not wait long for it."""
        self.send(self.request("CANCEL", branch, self.cseq))
        end = time.monotonic() + CANCEL_WAIT_S
        while (left := end - time.monotonic()) > 0:
            msg = self.receive(left)
            if msg is not None and msg.cseq == (self.cseq, "INVITE") and msg.code >= 300:
                self._ack_failure(msg, branch)
                return

    # -- during the media and after

    def listen_in_background(self) -> threading.Thread:
        """While RTP flows: answer a BYE from the speaker, re-ACK retransmitted 200s."""
        self._listening = True

        def run() -> None:
            while self._listening:
                with contextlib.suppress(OSError):
                    msg = self.receive(0.1)
                    if msg is not None and msg.cseq == (self.cseq, "INVITE") and 200 <= msg.code < 300:
                        self.send(self.request("ACK", _branch(), self.cseq, in_dialog=True))

        thread = threading.Thread(target=run, name=f"sip-{self.speaker.name}", daemon=True)
        thread.start()
        return thread

    def stop_listening(self, thread: threading.Thread) -> None:
        self._listening = False
        thread.join(1.0)

    def bye(self) -> str | None:
        """Hang up; returns a problem description or None (retransmits with timer E, capped at T2)."""
        self.cseq += 1
        bye = self.request("BYE", _branch(), self.cseq, in_dialog=True)
        deadline = time.monotonic() + BYE_TIMEOUT_S
        interval = T1
        while (left := deadline - time.monotonic()) > 0:
            self.send(bye)
            end = time.monotonic() + min(interval, left)
            while (wait := end - time.monotonic()) > 0:
                msg = self.receive(wait)
                if msg is not None and msg.cseq == (self.cseq, "BYE") and msg.code >= 200:
                    return None if msg.code < 300 else f"BYE answered {msg.code} {msg.reason}"
            interval = min(interval * 2, T2)
        return f"no answer to BYE within {BYE_TIMEOUT_S:g} s"


def _branch() -> str:
    """A fresh RFC 3261 transaction id (the magic cookie marks it as globally unique)."""
    return "z9hG4bK" + secrets.token_hex(8)


def _describe_failure(final: SipMessage, tried_auth: bool) -> str:
    code = final.code
    if code in (401, 403, 407) and tried_auth:
        return f"{code} {final.reason} after digest authentication: wrong username or password?"
    what = _REASONS.get(code) or ("redirected, not followed" if 300 <= code < 400 else "call failed")
    return f"{what} ({code} {final.reason})"


class SipSpeaker:
    """A SIP paging endpoint (see module docstring)."""

    def __init__(self, name: str, config: SipSpeakerConfig) -> None:
        self.name = name
        self.config = config
        self.uri = parse_sip_uri(config.uri)

    @property
    def sample_rate(self) -> int:
        """G.711 is 8 kHz."""
        return G711_RATE

    @property
    def label(self) -> str:
        return f"speaker {self.name!r} (sip {self.config.uri})"

    def error(self, cause: str) -> SpeakerError:
        return SpeakerError(f"{self.label}: {cause}")

    def play(self, audio: Pcm, stop: threading.Event) -> None:
        """Call, stream, hang up; returns when the last packet's audio is due at the speaker.

        ``stop`` cancels a ringing call or ends the stream within one packet (then hangs up). Deadline: the
        audio's length + ``timeout_s`` (answer) + the hang-up's own limits + margin.
        """
        if audio.rate != G711_RATE:
            raise self.error(f"needs {G711_RATE} Hz audio, got {audio.rate}")
        setup_s = self.config.timeout_s + CANCEL_WAIT_S + BYE_TIMEOUT_S
        deadline = Deadline.for_playback(self.label, audio.duration_s, setup_s, "for timeout_s and hang-up")
        loud = apply_gain(audio, self.config.gain_db)

        def media(rtp: socket.socket, dest: tuple[str, int], codec: Codec, pace: Callable[[float], None],
                  alive: Callable[[], None]) -> None:  # fmt: skip
            self._stream(rtp, dest, codec, loud, pace, alive)

        deadline.run(lambda: self._page(media, stop, deadline), stop)

    @property
    def talk_buffer_s(self) -> float:
        """Once the call is answered, packets go out as the audio arrives; at most LIVE_BUFFER_S is held back."""
        return LIVE_BUFFER_S

    def talk(self, feed: LiveFeed, stop: threading.Event) -> None:
        """Call, stream ``feed`` live until it ends, hang up. Audio spoken while the call rings is dropped."""
        setup_s = self.config.timeout_s + CANCEL_WAIT_S + BYE_TIMEOUT_S

        def media(rtp: socket.socket, dest: tuple[str, int], codec: Codec, pace: Callable[[float], None],
                  alive: Callable[[], None]) -> None:  # fmt: skip
            fmt = rtp_format(codec, None, self.config.ptime_ms)

            def send(packet: bytes) -> None:
                alive()
                rtp.sendto(packet, dest)

            send_live_rtp(send, feed, fmt, pace, self.config.gain_db)

        deadline = Deadline(setup_s + TALK_MAX_S, self.label, "talk")
        deadline.run(lambda: self._page(media, stop, deadline), stop)

    def _page(self, media: Media, stop: threading.Event, deadline: Deadline) -> None:
        try:
            with self._sip_socket() as sock, _rtp_socket(sock.getsockname()[0]) as rtp:
                self._call(sock, rtp, media, stop, deadline)
        except ConnectionRefusedError as exc:
            raise self.error(f"unreachable: nothing listens on {self.uri.host}:{self.uri.port} (ICMP refused)") from exc
        except OSError as exc:
            raise self.error(f"network error: {exc}") from exc

    def _call(
        self, sock: socket.socket, rtp: socket.socket, media: Media, stop: threading.Event, deadline: Deadline
    ) -> None:
        call = _Call(self, sock, sock.getpeername()[:2], stop)
        answer = call.invite(sdp_offer(call.local_ip, rtp.getsockname()[1], self.config.codec, self.config.ptime_ms))
        try:
            dest, codec = parse_sdp_answer(answer.body, self.config.codec)
        except ValueError as exc:
            call.bye()
            raise self.error(f"unusable SDP answer: {exc}") from exc
        listener = call.listen_in_background()
        started = time.monotonic()

        def alive() -> None:
            if call.remote_bye.is_set():
                raise self.error(f"the speaker hung up after {time.monotonic() - started:.1f} s")

        try:
            media(rtp, dest, codec, deadline.pacer(stop), alive)
        finally:
            call.stop_listening(listener)
            if not call.remote_bye.is_set():
                problem = call.bye()
                if problem:  # the audio went out; a lost BYE answer is worth a log line, not a failed announcement
                    log.warning("speaker %s: hang-up: %s", self.name, problem)

    def _stream(
        self,
        rtp: socket.socket,
        dest: tuple[str, int],
        codec: Codec,
        audio: Pcm,
        pace: Callable[[float], None],
        alive: Callable[[], None],
    ) -> None:
        fmt = rtp_format(codec, None, self.config.ptime_ms)
        packets = list(rtp_packets(packetize(audio.samples, fmt), fmt, secrets.randbits(16), secrets.randbits(32),
                                   secrets.randbits(32)))  # fmt: skip

        def send(packet: bytes) -> None:
            alive()
            rtp.sendto(packet, dest)

        send_paced(send, packets, fmt.ptime_s, sleep=pace)

    def _sip_socket(self) -> socket.socket:
        """UDP socket connected to the speaker: the kernel picks our address, ICMP errors reach recv()."""
        try:
            infos = socket.getaddrinfo(self.uri.host, self.uri.port, socket.AF_INET, socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            raise self.error(f"cannot resolve {self.uri.host!r}: {exc}") from exc
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.connect(infos[0][4][:2])
        except BaseException:
            sock.close()
            raise
        return sock

    def health(self) -> SpeakerHealth:
        """SIP OPTIONS ping (within min(timeout_s, HEALTH_S)): any response means the speaker is up."""
        return check_health(self.name, self.label, min(self.config.timeout_s, HEALTH_S), self._options)

    def _options(self, deadline: Deadline) -> str | None:
        try:
            with self._sip_socket() as sock:
                call = _Call(self, sock, sock.getpeername()[:2])
                call.cseq = 1
                options = call.request("OPTIONS", _branch(), 1)
                interval = T1
                while (left := deadline.remaining()) > 0:
                    call.send(options)
                    msg = call.receive(min(interval, left))
                    if msg is not None and msg.cseq == (1, "OPTIONS"):
                        return None
                    interval = min(interval * 2, T2)
                return str(self.error("no answer to OPTIONS"))
        except ConnectionRefusedError:
            return str(self.error(f"unreachable: nothing listens on {self.uri.host}:{self.uri.port}"))


def _rtp_socket(local_ip: str) -> socket.socket:
    """Our RTP source port, announced in the offer (some speakers send RTCP back to it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((local_ip if ipaddress.ip_address(local_ip).version == 4 else "0.0.0.0", 0))
    return sock
