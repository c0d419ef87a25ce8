"""Keeps the embedded Redis running: a server that exits (killed, crashed, out of memory) is started again.

Without it the single-machine default stays degraded after one Redis crash until someone restarts the engine:
every incident change waits in the outbox and the page shows nothing new. The keeper looks once a second
(``waitpid``, or a lock probe when no server of its own runs), restarts with capped backoff, and is also what
starts the server after a start that failed (a full disk at engine start). The outbox then delivers what
waited, in order and without duplicates.

The keeper's thread also stops the server at the end: the kernel's "stop Redis when the engine dies" signal
(``PR_SET_PDEATHSIG``) belongs to the thread that started the server, so the thread that may restart it must
live until it is stopped.
"""

from __future__ import annotations

import logging
import threading
import time

from monitor.store.embedded import EmbeddedRedis

log = logging.getLogger(__name__)

CHECK_S = 1.0
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 30.0
START_TIMEOUT_S = 10.0


class RedisKeeper:
    """Restart ``embedded`` whenever no server serves its directory; ``stop`` stops the server too."""

    def __init__(self, embedded: EmbeddedRedis, check_s: float = CHECK_S) -> None:
        self.embedded = embedded
        self.check_s = check_s
        self.restarts = 0
        self.last_problem: str | None = None  # why the server is down now (None: it runs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redis-keeper", daemon=True)

    def start(self) -> None:
        """Start watching in the background."""
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop watching and stop the server (from the keeper's thread: see the module docstring)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        else:
            self.embedded.stop()

    def _run(self) -> None:
        delay, next_try = FIRST_RETRY_S, 0.0
        try:
            while not self._stop.wait(self.check_s):
                if time.monotonic() < next_try:
                    continue
                why = self.embedded.missing()
                if why is None:
                    continue
                if self.last_problem is None:
                    log.error("embedded Redis is down: %s; starting it again", why)
                self.last_problem = why
                try:
                    self.embedded.start(timeout=START_TIMEOUT_S)
                except (RuntimeError, OSError) as exc:  # e.g. the disk is still full
                    log.error("embedded Redis did not start: %s; next try in %.0f s", exc, delay)
                    next_try, delay = time.monotonic() + delay, min(delay * 2, MAX_RETRY_S)
                    continue
                self.restarts += 1
                self.last_problem, delay = None, FIRST_RETRY_S
                log.warning("embedded Redis running again (restart %d): the outbox delivers what waited", self.restarts)
        finally:
            self.embedded.stop()
