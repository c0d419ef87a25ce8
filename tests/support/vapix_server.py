"""A fake Axis VAPIX speaker on 127.0.0.1: digest (MD5, qop=auth) or basic auth, optional TLS.

POST /axis-cgi/audio/transmit.cgi (audio/basic, Content-Length or chunked) -> 204, recorded in ``received``;
GET /axis-cgi/mediaclip.cgi?action=play&clip=N -> 200, recorded in ``plays``. Every request is answered in its
own thread (ThreadingHTTPServer), like a device handling the auth probe and the stream on one keep-alive link.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import re
import ssl
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


@dataclass
class Upload:
    """One transmit.cgi request as the speaker saw it."""

    content_type: str
    data: bytes
    started: float  # time.monotonic() when the headers arrived
    ended: float  # ... and when the body was complete


@dataclass
class FakeVapix:
    """The server; use as a context manager. ``scheme`` is "digest" or "basic"."""

    user: str = "root"
    password: str = "pass"
    scheme: str = "digest"
    realm: str = "AXIS_ACCC8E000000"
    tls: tuple[Path, Path] | None = None  # (cert chain PEM, key PEM)
    received: list[Upload] = field(default_factory=list)
    plays: list[int] = field(default_factory=list)
    unauthorized: int = 0
    aborted: int = 0  # uploads whose client hung up before the announced Content-Length arrived
    nonces: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> FakeVapix:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def authorized(self, header: str, method: str) -> bool:
        if self.scheme == "basic":
            expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            return header == f"Basic {expected}"
        if not header.startswith("Digest "):
            return False
        fields = re.findall(r'(\w+)=(?:"([^"]*)"|([^\s,]*))', header[7:])
        f = {key.lower(): quoted or plain for key, quoted, plain in fields}
        return self._digest_ok(f, method)

    def _digest_ok(self, f: dict[str, str], method: str) -> bool:
        if f.get("nonce") not in self.nonces or f.get("username") != self.user:
            return False
        ha1 = _md5(f"{self.user}:{self.realm}:{self.password}")
        ha2 = _md5(f"{method}:{f.get('uri', '')}")
        if "qop" in f:
            expected = _md5(f"{ha1}:{f['nonce']}:{f.get('nc')}:{f.get('cnonce')}:{f['qop']}:{ha2}")
        else:
            expected = _md5(f"{ha1}:{f['nonce']}:{ha2}")
        return expected == f.get("response")

    def challenge(self) -> str:
        if self.scheme == "basic":
            return f'Basic realm="{self.realm}"'
        nonce = os.urandom(8).hex()
        self.nonces.add(nonce)
        return f'Digest realm="{self.realm}", nonce="{nonce}", algorithm=MD5, qop="auth"'


def _handler(owner: FakeVapix) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = bytearray()
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    out += self.rfile.read(size)
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

        def _reply(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _check_auth(self) -> bool:
            if owner.authorized(self.headers.get("Authorization", ""), self.command):
                return True
            owner.unauthorized += 1
            self._reply(401, b"Unauthorized\r\n", {"WWW-Authenticate": owner.challenge()})
            return False

        def do_GET(self) -> None:
            if not self._check_auth():
                return
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/axis-cgi/mediaclip.cgi" and query.get("action") == "play":
                owner.plays.append(int(query["clip"]))
                return self._reply(200, b"OK\r\n")
            self._reply(404, b"Not found\r\n")

        def do_POST(self) -> None:
            started = time.monotonic()
            data = self._body()  # read it even when refusing, so the connection stays in sync
            if not self._check_auth():
                return
            if self.path.startswith("/axis-cgi/audio/transmit.cgi"):
                if len(data) < int(self.headers.get("Content-Length", len(data))):
                    owner.aborted += 1  # the client stopped streaming (interrupted): nobody to answer
                    self.close_connection = True
                    return None
                if data:  # the client's empty auth probe carries no audio
                    owner.received.append(Upload(self.headers.get("Content-Type", ""), data, started, time.monotonic()))
                return self._reply(204)
            self._reply(404, b"Not found\r\n")

    return Handler


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key)."""
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
            "-subj", "/CN=village-monitor test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return ca, cert, key
