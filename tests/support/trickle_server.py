"""A TCP server on 127.0.0.1 that accepts every connection and answers one byte every ``interval_s``, forever.

The device a socket timeout cannot catch: every byte restarts the timeout. It starts a plausible HTTP answer
(``HTTP/1.1 204 No Content``...) and never finishes it. ``hangups`` records, per connection, when the client went
away (read EOF or reset), so a test can check that the client really let go instead of leaving a thread behind.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

ANSWER = b"HTTP/1.1 204 No Content\r\nServer: trickle\r\nX-Padding: " + b"." * 4096


class TrickleServer:
    """Use as a context manager; ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, interval_s: float = 2.0) -> None:
        self.interval_s = interval_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted: list[float] = []  # time.monotonic() of each accepted connection
        self.hangups: list[float] = []  # time.monotonic() when a client closed or reset its connection
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> TrickleServer:
        self._spawn(self._accept)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self.listener.close()
        for thread in self._threads:
            thread.join(5)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(time.monotonic())
            self._spawn(self._trickle, conn)

    def _trickle(self, conn: socket.socket) -> None:
        """Send ANSWER one byte per interval; meanwhile read (and drop) what the client sends, until it leaves."""
        with conn:
            if self._serve(conn):
                self.hangups.append(time.monotonic())

    def _serve(self, conn: socket.socket) -> bool:
        """True when the client left, False when the server was stopped first."""
        sent = 0
        next_byte = time.monotonic() + self.interval_s
        while not self._stop.is_set():
            readable, _, _ = select.select([conn], [], [], max(0.0, min(0.05, next_byte - time.monotonic())))
            try:
                if readable and not conn.recv(65536):
                    return True
                if time.monotonic() >= next_byte:
                    conn.sendall(ANSWER[sent % len(ANSWER) : sent % len(ANSWER) + 1])
                    sent += 1
                    next_byte += self.interval_s
            except OSError:
                return True
        return False
