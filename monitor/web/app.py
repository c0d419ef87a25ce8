"""The web application: pages, JSON API, live events, /metrics and /healthz on one FastAPI app."""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import redis
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor.config import LoadedConfig
from monitor.config.watch import ConfigWatcher
from monitor.config.web import WebConfig
from monitor.ingest.live_feed import LocalPackets
from monitor.web import account, api, broadcasts_api, live, pages, review_api, speaker_api, talk_api
from monitor.web.auth import UNAVAILABLE, Auth, optional_session, viewer
from monitor.web.exports import ExportJobs
from monitor.web.metrics import EngineMetrics, MetricsExporter
from monitor.web.playable import PlayableCopies

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
# A page asked for while Redis is away says so and reloads itself, instead of an error in a monitoring room's browser.
STORE_DOWN_PAGE = (
    '<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">'
    f"<title>village-monitor: store unavailable</title></head><body><p>{UNAVAILABLE}.</p>"
    "<p>This page reloads every 5 seconds.</p></body></html>"
)
# media-src blob: lets live video play from a MediaSource object URL (monitor/web/static/live.js); connect-src 'self'
# also covers the same-host ws:// of that live stream (CSP Level 3, verified in Chromium by tests/test_web_live.py).
CSP = (
    "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeaders:
    """Pure ASGI (not BaseHTTPMiddleware) so streamed clips and event streams pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += HEADERS
                if not static and not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(
    store_client: redis.Redis,
    config: LoadedConfig | None,
    *,
    secret_key: str | None = None,
    metrics: EngineMetrics | None = None,
    engine_health: Callable[[], Mapping[str, object]] | None = None,
    local_packets: LocalPackets | None = None,
) -> FastAPI:
    """The web app on ``store_client``'s Redis.

    ``config`` supplies zones and the data directory (media outside it is never served); None is
    allowed for a bare review instance. ``secret_key`` keys the session-token HMAC (default: one
    stored in Redis, shared by every instance). ``metrics``: the running engine's counters; ``engine_health``:
    the running engine's own state (outbox backlog, store and disk problems) for /healthz and the dashboard;
    ``local_packets``: the running engine's packets of a camera's input, so live viewers do not open the camera again.
    """
    app = FastAPI(
        title="village-monitor",
        summary="Live cameras, incident review and acknowledgement for a village monitoring center.",
        version="0.1.0",
        docs_url=None,  # Swagger UI loads scripts from a CDN: not in a closed control-room network
        redoc_url=None,
        openapi_url=None,  # served below, to logged-in users only
    )
    web = config.config.web if config is not None else WebConfig()
    app.state.web_config = web  # WebServer reads trusted_proxies from here
    app.state.redis = store_client
    app.state.local_packets = local_packets  # read by the live-video route (monitor.ingest.live_feed)
    app.state.config = ConfigWatcher(config) if config is not None else None  # follows saved edits
    app.state.exports = ExportJobs(config) if config is not None else None
    app.state.auth = Auth(store_client, secret_key, session_max_s=web.session_max_hours * 3600)
    app.state.stopping = threading.Event()  # set on shutdown: event streams end instead of holding it up
    app.state.playable = PlayableCopies(store_client, config, app.state.stopping) if config is not None else None
    if app.state.playable is not None:  # H.265 clips get their browser-playable copy as soon as they are cut
        app.router.on_startup.append(app.state.playable.follow)
    exporter = MetricsExporter(store_client, config, metrics)

    @app.get("/healthz", tags=["ops"], responses={503: {"description": "Redis unreachable"}})
    def healthz() -> JSONResponse:
        """Open liveness check: the server answers and reaches Redis; ``degraded`` while the engine in this process
        has incident changes waiting for Redis, cannot write media (low disk), or saw an action fail."""
        try:
            store_client.ping()
            reachable = True
        except redis.RedisError:
            reachable = False
        engine = dict(engine_health()) if engine_health is not None else None
        degraded = not reachable or bool(engine and engine.get("degraded"))
        status = "degraded" if degraded else "ok"
        body: dict[str, object] = {"ok": reachable and not degraded, "status": status, "redis": reachable}
        if engine is not None:
            body["engine"] = engine
        return JSONResponse(body, status_code=200 if reachable else 503)

    def may_scrape(request: Request) -> bool:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if web.metrics_token and scheme.lower() == "bearer":
            return hmac.compare_digest(credentials.strip().encode(), web.metrics_token.encode())
        return optional_session(request) is not None

    @app.get(
        "/metrics",
        tags=["ops"],
        response_class=Response,
        responses={401: {"description": "Needs a login or 'Authorization: Bearer <web.metrics_token>'"}},
    )
    def prometheus(request: Request) -> Response:
        """Prometheus text format: per-camera fps, dropped frames, incidents by type, speaker failures. For a
        logged-in user, or a scraper sending ``Authorization: Bearer <web.metrics_token>``."""
        if not may_scrape(request):
            raise HTTPException(401, "login or metrics token required", headers={"WWW-Authenticate": "Bearer"})
        return Response(exporter.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(viewer)])
    def openapi() -> JSONResponse:
        """The API description, for logged-in users only."""
        return JSONResponse(app.openapi())

    @app.exception_handler(redis.RedisError)
    def store_down(request: Request, exc: redis.RedisError) -> Response:
        """Any request that needed Redis while it is down or frozen: 503 within the client's timeout, not a
        hung worker or a bare 500 (the engine's incidents wait in its outbox meanwhile)."""
        log.warning("%s %s: Redis: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        headers = {"Retry-After": "5"}
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(STORE_DOWN_PAGE, status_code=503, headers=headers)
        return JSONResponse({"detail": UNAVAILABLE}, status_code=503, headers=headers)

    app.include_router(account.auth_router)
    app.include_router(account.router)
    app.include_router(api.router)
    app.include_router(review_api.router)
    app.include_router(speaker_api.router)
    app.include_router(broadcasts_api.router)
    app.include_router(live.router)
    app.include_router(talk_api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(SecurityHeaders)
    return app
