"""Run the web app with uvicorn in a background thread (inside ``monitor run``, and in tests)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import uvicorn
from fastapi import FastAPI

from monitor.web.protocol import REQUEST_DEADLINE_S, guarded_protocol

GRACEFUL_S = 3  # open event streams never end by themselves: don't wait longer for them on shutdown


class WebServer:
    """uvicorn on its own thread and event loop; ``start`` returns once it accepts connections.

    X-Forwarded-For/-Proto are believed only from ``trusted_proxies`` (addresses or networks; default: the app's
    ``web.trusted_proxies``, none without a config). uvicorn's own default trusts 127.0.0.1, so anyone on this
    machine, or behind a local proxy that passes headers through, could pick their address and escape login limits.
    A request must arrive complete within ``request_deadline_s``, its body under 1 MiB (``monitor.web.protocol``).
    """

    def __init__(
        self,
        app: FastAPI,
        host: str = "127.0.0.1",
        port: int = 8080,
        log_level: str = "warning",
        trusted_proxies: Sequence[str] | None = None,
        request_deadline_s: float = REQUEST_DEADLINE_S,
    ) -> None:
        self.app = app
        if trusted_proxies is None:
            trusted_proxies = tuple(getattr(getattr(app.state, "web_config", None), "trusted_proxies", ()))
        self.config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            timeout_graceful_shutdown=GRACEFUL_S,
            access_log=False,
            proxy_headers=bool(trusted_proxies),
            forwarded_allow_ips=list(trusted_proxies) if trusted_proxies else [],
            http=guarded_protocol(request_deadline_s),  # a request must arrive whole in time (monitor/web/protocol.py)
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="web", daemon=True)

    @property
    def url(self) -> str:
        """Base URL (with the real port when 0 was asked for)."""
        port = self.config.port
        for srv in getattr(self.server, "servers", []):
            for sock in srv.sockets:
                port = sock.getsockname()[1]
        return f"http://{self.config.host}:{port}"

    def start(self, timeout: float = 10.0) -> WebServer:
        """Start serving; raise RuntimeError if it is not up within ``timeout``."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"web server did not start on {self.config.host}:{self.config.port}")
            time.sleep(0.02)
        return self

    def request_stop(self) -> None:
        """Begin shutting down (safe from a signal handler): event streams end within a second."""
        stopping = getattr(self.app.state, "stopping", None)
        if isinstance(stopping, threading.Event):
            stopping.set()
        self.server.should_exit = True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, close connections, wait for the thread."""
        self.request_stop()
        self.thread.join(timeout)
