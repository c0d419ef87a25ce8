"""HTTP speaker in the style of Axis VAPIX: stream mu-law audio to ``transmit.cgi`` or play a stored clip.

Built on ``http.client`` rather than ``requests``: the announcement is streamed in real time (the speaker plays
as it arrives and answers when the stream ends, so ``play`` returns when the audio was heard), and with
``requests`` a digest challenge on a streamed body silently re-sends an exhausted generator (0 bytes arrive,
the speaker still answers 204). Here authentication is settled first with an empty POST, then the audio is sent
once, with the Authorization header already in place. The digest helpers are shared with SIP (same RFC 2617).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from speakers import g711
from speakers.audio import Pcm, apply_gain
from speakers.base import SpeakerError, interruptible_sleep
from speakers.config import HttpSpeakerConfig
from speakers.rtp import send_paced

TRANSMIT_PATH = "/axis-cgi/audio/transmit.cgi"
CLIP_PATH = "/axis-cgi/mediaclip.cgi"
RATE = 8000  # audio/basic: G.711 mu-law, 8 kHz, mono
CHUNK_S = 0.1  # 100 ms per write: small enough for a prompt interrupt, big enough to be cheap

_PARAM = re.compile(r'([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


# ---------------------------------------------------------------------------------------------- authentication


@dataclass
class Challenge:
    """One parsed ``WWW-Authenticate`` / ``Proxy-Authenticate`` challenge."""

    scheme: str  # lower case: "basic" or "digest"
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(values: list[str]) -> list[Challenge]:
    """Parse challenge header values (one challenge per value, the common form)."""
    out = []
    for value in values:
        scheme, _, rest = value.strip().partition(" ")
        params = {k.lower(): (q if q or not u else u).replace('\\"', '"') for k, q, u in _PARAM.findall(rest)}
        out.append(Challenge(scheme.lower(), params))
    return out


def pick_challenge(challenges: list[Challenge]) -> Challenge | None:
    """Prefer digest (password never sent) over basic; None when neither is offered."""
    for scheme in ("digest", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None


def basic_authorization(username: str, password: str) -> str:
    """RFC 7617 credentials."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def digest_authorization(
    challenge: Challenge, method: str, uri: str, username: str, password: str, nc: int = 1, cnonce: str | None = None
) -> str:
    """RFC 2617/7616 digest response (MD5, MD5-sess, SHA-256; qop auth or none). Raises ValueError otherwise."""
    p = challenge.params
    algorithm = p.get("algorithm", "MD5").upper()
    sess = algorithm.endswith("-SESS")
    hash_name = algorithm.removesuffix("-SESS")
    if hash_name not in _HASHES:
        raise ValueError(f"unsupported digest algorithm {algorithm}")

    def h(text: str) -> str:
        return _HASHES[hash_name](text.encode()).hexdigest()

    realm, nonce = p.get("realm", ""), p.get("nonce", "")
    cnonce = cnonce or os.urandom(8).hex()
    ha1 = h(f"{username}:{realm}:{password}")
    if sess:
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    qops = [q.strip() for q in p.get("qop", "").split(",") if q.strip()]
    fields = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if qops:
        if "auth" not in qops:
            raise ValueError(f"unsupported digest qop {p['qop']!r}")
        response = h(f"{ha1}:{nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
        fields += ["qop=auth", f"nc={nc:08x}", f'cnonce="{cnonce}"']
    else:
        response = h(f"{ha1}:{nonce}:{ha2}")
    fields += [f'response="{response}"', f"algorithm={algorithm}"]
    if "opaque" in p:
        fields.append(f'opaque="{p["opaque"]}"')
    return "Digest " + ", ".join(fields)


# ---------------------------------------------------------------------------------------------- the speaker


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

    def _error(self, cause: str) -> SpeakerError:
        return SpeakerError(f"speaker {self.name!r} (http {self.config.url}): {cause}")

    def play(self, audio: Pcm, stop: threading.Event | None = None) -> None:
        """Stream the announcement (mode transmit) or trigger the stored clip (mode clip); raise SpeakerError."""
        if audio.rate != RATE:
            raise self._error(f"needs {RATE} Hz audio, got {audio.rate}")
        try:
            if self.config.mode == "clip":
                self._play_clip()
            else:
                self._transmit(g711.ulaw_encode(apply_gain(audio, self.config.gain_db).samples).tobytes(), stop)
        except ssl.SSLCertVerificationError as exc:
            raise self._error(f"TLS certificate not trusted ({exc.verify_message}); set ca_file to its CA") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise self._error(f"{type(exc).__name__}: {exc}") from exc

    def health(self) -> str | None:
        """Reachable and speaking HTTP (any status, 401 included, means the device is up); else the problem."""
        try:
            conn = self._connect()
            try:
                conn.request("GET", self._prefix + "/")
                conn.getresponse().read()
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            return str(self._error(f"{type(exc).__name__}: {exc}"))
        return None

    # -- requests

    def _connect(self) -> http.client.HTTPConnection:
        timeout = self.config.timeout_s
        if not self._https:
            return http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._tls_context())

    def _tls_context(self) -> ssl.SSLContext:
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

    def _play_clip(self) -> None:
        uri = f"{self._prefix}{CLIP_PATH}?action=play&clip={self.config.clip}"
        conn = self._connect()
        try:
            status, challenges = self._simple(conn, "GET", uri, {})
            if status == 401:
                auth = self._authorization(challenges, "GET", uri, 1)
                status, _ = self._simple(conn, "GET", uri, {"Authorization": auth})
            self._check(status, f"GET {uri}")
        finally:
            conn.close()

    def _transmit(self, ulaw: bytes, stop: threading.Event | None) -> None:
        uri = self._prefix + TRANSMIT_PATH
        headers = {"Content-Type": "audio/basic", "Content-Length": "0"}
        conn = self._connect()
        try:
            status, challenges = self._simple(conn, "POST", uri, headers)  # settles auth; empty stream = silence
            if status == 401:
                headers["Authorization"] = self._authorization(challenges, "POST", uri, 1)
            elif status >= 300:
                self._check(status, f"POST {uri}")
            self._stream(conn, uri, headers, ulaw, stop)
        finally:
            conn.close()

    def _stream(
        self,
        conn: http.client.HTTPConnection,
        uri: str,
        headers: dict[str, str],
        ulaw: bytes,
        stop: threading.Event | None,
    ) -> None:
        """POST with an exact Content-Length, writing 100 ms chunks in real time; the answer ends the playback."""
        conn.putrequest("POST", uri)
        for key, value in {**headers, "Content-Length": str(len(ulaw))}.items():
            conn.putheader(key, value)
        conn.endheaders()
        step = int(RATE * CHUNK_S)
        chunks = [ulaw[i : i + step] for i in range(0, len(ulaw), step)]
        try:
            send_paced(conn.send, chunks, CHUNK_S, sleep=interruptible_sleep(stop, f"speaker {self.name!r}"))
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
