"""HTML pages: static shells that fetch their data from the JSON API (no templating, no build step)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse, Response

from monitor.web.auth import optional_session

TEMPLATES = Path(__file__).parent / "templates"
router = APIRouter(include_in_schema=False)


def _page(request: Request, name: str) -> Response:
    """The page, or a redirect to the login page that comes back here afterwards."""
    if optional_session(request) is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{_next(target)}", status_code=303)
    return FileResponse(TEMPLATES / name, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})


def _next(target: str) -> str:
    return urlencode({"next": target})


@router.get("/login")
def login_page() -> FileResponse:
    """The login form."""
    return FileResponse(TEMPLATES / "login.html", media_type="text/html; charset=utf-8")


@router.get("/")
def dashboard(request: Request) -> Response:
    """Every camera at a glance."""
    return _page(request, "dashboard.html")


@router.get("/cameras/{name}")
def camera_page(request: Request, name: Annotated[str, PathParam(max_length=200)]) -> Response:
    """One camera with its zones."""
    return _page(request, "camera.html")


@router.get("/incidents")
def incidents_page(request: Request) -> Response:
    """The incident list."""
    return _page(request, "incidents.html")


@router.get("/incidents/{incident_id}")
def incident_page(request: Request, incident_id: Annotated[str, PathParam(max_length=64)]) -> Response:
    """One incident: clip, snapshot, timeline, actions."""
    return _page(request, "incident.html")
