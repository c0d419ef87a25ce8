"""HTML pages: static shells that fetch their data from the JSON API (no build step).

Every signed-in page is ``_layout.html`` (head, navigation) around its own ``<main>`` from ``NAME.html``,
put together once per process.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from monitor.web.auth import optional_session

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
TITLES = {
    "dashboard": "摄像头 Cameras",
    "camera": "摄像头 Camera",
    "incidents": "事件 Incidents",
    "incident": "事件 Incident",
    "timeline": "时间线 Timeline",
    "speakers": "喇叭 Speakers",
    "broadcasts": "定时广播 Broadcasts",
    "users": "用户 Users",
}
router = APIRouter(include_in_schema=False)


@functools.cache
def _render(name: str) -> str:
    layout = (TEMPLATES / "_layout.html").read_text(encoding="utf-8")
    main = (TEMPLATES / f"{name}.html").read_text(encoding="utf-8")
    own_style = STATIC / f"{name}.css"  # a page's own rules, beside the shared app.css
    style = f'<link rel="stylesheet" href="/static/{name}.css">' if own_style.is_file() else ""
    return (
        layout.replace("{{title}}", f"{TITLES[name]} · 村庄监控")
        .replace("{{style}}", style)
        .replace("{{script}}", f"{name}.js")
        .replace("{{main}}", main.strip())
    )


def _page(request: Request, name: str) -> Response:
    """The page, or a redirect to the login page that comes back here afterwards."""
    if optional_session(request) is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{_next(target)}", status_code=303)
    return HTMLResponse(_render(name), headers={"Cache-Control": "no-store"})


def _next(target: str) -> str:
    return urlencode({"next": target})


@router.get("/login")
def login_page() -> FileResponse:
    """The login form."""
    return FileResponse(TEMPLATES / "login.html", media_type="text/html; charset=utf-8")


@router.get("/")
def dashboard(request: Request) -> Response:
    """Every camera at a glance."""
    return _page(request, "dashboard")


@router.get("/cameras/{name}")
def camera_page(request: Request, name: Annotated[str, PathParam(max_length=200)]) -> Response:
    """One camera with its zones."""
    return _page(request, "camera")


@router.get("/incidents")
def incidents_page(request: Request) -> Response:
    """The incident list."""
    return _page(request, "incidents")


@router.get("/incidents/{incident_id}")
def incident_page(request: Request, incident_id: Annotated[str, PathParam(max_length=64)]) -> Response:
    """One incident: clip, snapshot, timeline, actions."""
    return _page(request, "incident")


@router.get("/timeline")
def timeline_page(request: Request) -> Response:
    """Incidents of every camera over the last hours, a bar per camera."""
    return _page(request, "timeline")


@router.get("/speakers")
def speakers_page(request: Request) -> Response:
    """Every speaker: checked health, last announcement, a test button."""
    return _page(request, "speakers")


@router.get("/broadcasts")
def broadcasts_page(request: Request) -> Response:
    """Scheduled broadcasts and their play log."""
    return _page(request, "broadcasts")


@router.get("/users")
def users_page(request: Request) -> Response:
    """Accounts (the API lets admins only)."""
    return _page(request, "users")
