"""HTTP speaker in the style of Axis VAPIX: stream mu-law audio to ``transmit.cgi`` or play a stored clip.

Built on ``http.client`` rather than ``requests``: the announcement is streamed in real time (the speaker plays
as it arrives and answers when the stream ends, so ``play`` returns when the audio was heard), and with
``requests`` a digest challenge on a streamed body silently re-sends an exhausted generator (0 bytes arrive,
the speaker still answers 204). Here authentication is settled first with an empty POST, then the audio is sent
once, with the Authorization header already in place.

Every operation has a total deadline (``speakers.deadline``): ``timeout_s`` covers connecting and every answer
together, a transmit adds the audio's length. A speaker that answers one byte at a time never trips a socket
timeout, so the deadline shuts the connection down instead.

Live talk goes out phrase by phrase: transmit.cgi needs the stream's length up front, so the talk's audio is
gathered into ``PHRASE_S`` pieces, each sent as one transmit (while it plays, the next one gathers). That adds
about ``PHRASE_S`` plus a request's round trip of delay; a speaker in mode ``clip`` cannot carry speech at all.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import urlsplit

from speakers import g711
from speakers.audio import Pcm, apply_gain
from speakers.base import PlaybackInterrupted, SpeakerError, SpeakerHealth
from speakers.config import HttpSpeakerConfig
from speakers.deadline import HEALTH_S, Deadline, check_health, shutdown_socket
from speakers.digest import Challenge, basic_authorization, digest_authorization, parse_challenges, pick_challenge
from speakers.live import TALK_MAX_S, LiveFeed
from speakers.rtp_wire import send_paced

TRANSMIT_PATH = "/axis-cgi/audio/transmit.cgi"
CLIP_PATH = "/axis-cgi/mediaclip.cgi"
RATE = 8000  # audio/basic: G.711 mu-law, 8 kHz, mono
CHUNK_S = 0.1  # 100 ms per write: small enough for a prompt interrupt, big enough to be cheap
PHRASE_S = 2.0  # live talk: audio per transmit request (the delay a talk to this kind of speaker adds)


class _Connection(http.client.HTTPConnection):
    """An HTTP(S) connection whose connect, TLS handshake included, the deadline can abort (see ``abort``).

    http.client's own HTTPS connect hands the socket to TLS inside one call, where nothing outside can reach it.
    """

    def __init__(self, host: str, port: int | None, tls: ssl.SSLContext | None, deadline: Deadline, cap: float):
        self.default_port = 443 if tls else 80  # so the Host header leaves the default port out
        super().__init__(host, port or self.default_port, timeout=deadline.timeout(cap))
        self._tls, self._deadline, self._cap = tls, deadline, cap

    def connect(self) -> None:
        self.timeout = self._deadline.timeout(self._cap)
        sock = socket.create_connection((self.host, self.port), self.timeout)
        if self._tls is None:
            self.sock = sock
            return
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
        self.sock.do_handshake()

    def abort(self) -> None:
        """Deadline hook: wake whatever waits on the socket (connect, handshake, request or answer)."""
        shutdown_socket(self.sock)


class HttpSpeaker:
    """A VAPIX-style network speaker (see module docstring)."""

    def __init__(self, name: str, config: HttpSpeakerConfig) -> None:
        self.name = name
        self.config = config
        parts = urlsplit(config.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")

    @property
    def sample_rate(self) -> int:
        """audio/basic is 8 kHz."""
        return RATE

    @property
    def _label(self) -> str:
        return f"speaker {self.name!r} (http {self.config.url})"

    def _error(self, cause: str) -> SpeakerError:
        return SpeakerError(f"{self._label}: {cause}")

    def play(self, audio: Pcm, stop: threading.Event) -> None:
        """Stream the announcement (mode transmit) or trigger the stored clip (mode clip); raise SpeakerError.

        Deadline: ``timeout_s`` + the audio's length + margin for a transmit; ``timeout_s`` + margin for a clip.
        """
        if audio.rate != RATE:
            raise self._error(f"needs {RATE} Hz audio, got {audio.rate}")
        if self.config.mode == "clip":
            deadline = Deadline.for_playback(self._label, 0.0, self.config.timeout_s, "timeout_s")
            deadline.run(lambda: self._guarded(lambda: self._play_clip(deadline)), stop)
            return
        ulaw = g711.ulaw_encode(apply_gain(audio, self.config.gain_db).samples).tobytes()
        deadline = Deadline.for_playback(self._label, audio.duration_s, self.config.timeout_s, "timeout_s")
        deadline.run(lambda: self._guarded(lambda: self._transmit(ulaw, stop, deadline)), stop)

    @property
    def talk_buffer_s(self) -> float:
        """A phrase gathering while the previous one plays, and room for the next request's set-up."""
        return 2 * PHRASE_S + 1.0

    def talk(self, feed: LiveFeed, stop: threading.Event) -> None:
        """Send ``feed`` as a transmit per PHRASE_S of audio (see module docstring) until it ends."""
        if self.config.mode == "clip":
            raise self._error("live talk needs mode: transmit (a clip stored on the speaker cannot carry speech)")
        deadline = Deadline(self.config.timeout_s + TALK_MAX_S, self._label, "talk")
        deadline.run(lambda: self._guarded(lambda: self._talk(feed, stop, deadline)), stop)

    def _talk(self, feed: LiveFeed, stop: threading.Event, deadline: Deadline) -> None:
        while (phrase := feed.take(int(RATE * PHRASE_S), PHRASE_S, partial=True)) is not None:
            if stop.is_set():
                raise PlaybackInterrupted(f"{self._label}: interrupted on request")
            if len(phrase):
                ulaw = g711.ulaw_encode(apply_gain(Pcm(phrase, RATE), self.config.gain_db).samples).tobytes()
                self._transmit(ulaw, stop, deadline)
                feed.stats.sent(len(phrase), len(ulaw))

    def _guarded(self, operation: Callable[[], None]) -> None:
        """``operation`` with network and TLS errors turned into SpeakerErrors that say what to do."""
        try:
            operation()
        except ssl.SSLCertVerificationError as exc:
            raise self._error(f"TLS certificate not trusted ({exc.verify_message}); set ca_file to its CA") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise self._error(f"{type(exc).__name__}: {exc}") from exc

    def health(self) -> SpeakerHealth:
        """Reachable and speaking HTTP (any status, 401 included, means the device is up); else the problem."""
        return check_health(self.name, self._label, min(self.config.timeout_s, HEALTH_S), self._probe)

    def _probe(self, deadline: Deadline) -> str | None:
        try:
            with self._connection(deadline) as conn:
                conn.request("GET", self._prefix + "/")
                conn.getresponse().read()
        except (OSError, http.client.HTTPException) as exc:
            return str(self._error(f"{type(exc).__name__}: {exc}"))
        return None

    # -- requests

    @contextmanager
    def _connection(self, deadline: Deadline) -> Iterator[_Connection]:
        """A connection the deadline shuts down; closed on the way out (after the hook is gone)."""
        conn = _Connection(self._host, self._port, self._tls_context(), deadline, self.config.timeout_s)
        try:
            with deadline.aborting(conn.abort):
                yield conn
        finally:
            conn.close()

    def _tls_context(self) -> ssl.SSLContext | None:
        if not self._https:
            return None
        if not self.config.verify_tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        cafile = str(self.config.ca_file) if self.config.ca_file else None
        return ssl.create_default_context(cafile=cafile)

    def _authorization(self, challenges: list[Challenge], method: str, uri: str, nc: int) -> str:
        """The Authorization header answering the speaker's 401, or a clear error when we cannot."""
        cfg = self.config
        if cfg.username is None or cfg.password is None:
            raise self._error(f"401 Unauthorized for {method} {uri}: the speaker needs a username and password")
        challenge = pick_challenge(challenges)
        if challenge is None:
            raise self._error(f"401 Unauthorized: unsupported auth scheme(s) {[c.scheme for c in challenges]}")
        if challenge.scheme == "basic":
            return basic_authorization(cfg.username, cfg.password)
        try:
            return digest_authorization(challenge, method, uri, cfg.username, cfg.password, nc)
        except ValueError as exc:
            raise self._error(f"401 Unauthorized: {exc}") from exc

    @staticmethod
    def _simple(
        conn: http.client.HTTPConnection, method: str, uri: str, headers: Mapping[str, str]
    ) -> tuple[int, list[Challenge]]:
        """One request without body: (status, auth challenges); the connection stays reusable."""
        conn.request(method, uri, headers=dict(headers))
        response = conn.getresponse()
        response.read()
        return response.status, parse_challenges(response.headers.get_all("WWW-Authenticate") or [])

    def _play_clip(self, deadline: Deadline) -> None:
        uri = f"{self._prefix}{CLIP_PATH}?action=play&clip={self.config.clip}"
        with self._connection(deadline) as conn:
            status, challenges = self._simple(conn, "GET", uri, {})
            if status == 401:
                auth = self._authorization(challenges, "GET", uri, 1)
                status, _ = self._simple(conn, "GET", uri, {"Authorization": auth})
            self._check(status, f"GET {uri}")

    def _transmit(self, ulaw: bytes, stop: threading.Event, deadline: Deadline) -> None:
        uri = self._prefix + TRANSMIT_PATH
        headers = {"Content-Type": "audio/basic", "Content-Length": "0"}
        with self._connection(deadline) as conn:
            status, challenges = self._simple(conn, "POST", uri, headers)  # settles auth; empty stream = silence
            if status == 401:
                headers["Authorization"] = self._authorization(challenges, "POST", uri, 1)
            elif status >= 300:
                self._check(status, f"POST {uri}")
            self._stream(conn, uri, headers, ulaw, stop, deadline)

    def _stream(
        self,
        conn: http.client.HTTPConnection,
        uri: str,
        headers: dict[str, str],
        ulaw: bytes,
        stop: threading.Event,
        deadline: Deadline,
    ) -> None:
        """POST with an exact Content-Length, writing 100 ms chunks in real time; the answer ends the playback."""
        conn.putrequest("POST", uri)
        for key, value in {**headers, "Content-Length": str(len(ulaw))}.items():
            conn.putheader(key, value)
        conn.endheaders()
        step = int(RATE * CHUNK_S)
        chunks = [ulaw[i : i + step] for i in range(0, len(ulaw), step)]
        try:
            send_paced(conn.send, chunks, CHUNK_S, sleep=deadline.pacer(stop))
        except BrokenPipeError as exc:  # the speaker gave up mid-stream (e.g. rejected credentials early)
            response = conn.getresponse()
            raise self._error(f"{response.status} {response.reason} while streaming") from exc
        response = conn.getresponse()
        response.read()
        self._check(response.status, f"POST {uri}")

    def _check(self, status: int, what: str) -> None:
        if status == 401:
            raise self._error(f"401 Unauthorized for {what}: wrong username or password")
        if not 200 <= status < 300:
            reason = http.client.responses.get(status, "")
            raise self._error(f"{what} answered {status} {reason}".rstrip())
