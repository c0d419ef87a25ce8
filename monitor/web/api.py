"""JSON API under /api/: cameras, incidents, staff actions with an audit trail, media by id, live events.

Media files are found only through the incident record (or the camera's status hash, for a camera the config or
the engine knows) and must lie inside the data directory; nothing in the request is ever used as a path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import redis
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from monitor.config import ConfigError, ConfigProblem, LoadedConfig
from monitor.config.edit import ZoneEditError, set_zone, zone_snippet
from monitor.config.models import NAME_MAX, name_problem
from monitor.config.watch import ConfigWatcher
from monitor.incident import Incident
from monitor.ingest import transcode
from monitor.store.incidents import IncidentStore, camera_key
from monitor.web import views
from monitor.web.auth import User, admin_write, operator_write, viewer
from monitor.web.events import event_stream
from monitor.web.exports import ExportJobs
from monitor.web.playable import PlayableCopies, PlayableStatus

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["monitor"])

IncidentId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Incident id.")]
CameraName = Annotated[str, PathParam(min_length=1, max_length=200, description="Camera name from the config.")]
Viewer = Annotated[User, Depends(viewer)]
Operator = Annotated[User, Depends(operator_write)]
Admin = Annotated[User, Depends(admin_write)]
ZoneName = Annotated[
    str,
    PathParam(
        min_length=1,
        max_length=NAME_MAX,
        description="Zone name: letters (any script) or digits, then also '_', '.', '-'; no '..'.",
    ),
]

ERRORS: dict[int | str, dict[str, Any]] = {401: {"description": "Not logged in"}, 404: {"description": "Not found"}}


class NoteBody(BaseModel):
    """A remark kept in the audit trail."""

    note: str | None = Field(None, max_length=2000, description="Optional remark (required for /note).")


def _redis(request: Request) -> redis.Redis:
    client: redis.Redis = request.app.state.redis
    return client


def _config(request: Request) -> LoadedConfig | None:
    """The newest valid streams.yaml (re-read after a save, so zones match what the engine now runs)."""
    watcher: ConfigWatcher | None = request.app.state.config
    if watcher is None:
        return None
    watcher.poll()
    return watcher.current


def _incident(request: Request, incident_id: str) -> Incident:
    incident = IncidentStore(_redis(request)).incident(incident_id)
    if incident is None:
        raise HTTPException(404, "no such incident")
    return incident


def _media_file(request: Request, stored: Any, missing: str = "no such file for this incident") -> Path:
    """A media path taken from a record, refused unless it is a file inside the data directory."""
    if not isinstance(stored, str) or not stored:
        raise HTTPException(404, missing)
    path = Path(stored).resolve()
    config = _config(request)
    if config is not None and not path.is_relative_to(config.data_dir):
        log.warning("refusing media outside the data directory: %s", path)
        raise HTTPException(404, missing)
    if not path.is_file():
        raise HTTPException(404, "file no longer available (expired or deleted)")
    return path


@router.get("/cameras", responses=ERRORS)
def list_cameras(request: Request, _: Viewer) -> list[views.CameraStatus]:
    """Every camera with its live state, sorted by name."""
    return views.camera_statuses(_redis(request), _config(request))


@router.get("/cameras/{name}", responses=ERRORS)
def get_camera(request: Request, name: CameraName, _: Viewer) -> views.CameraDetail:
    """One camera's live state and configured zones."""
    cam = views.camera_detail(_redis(request), _config(request), name)
    if cam is None:
        raise HTTPException(404, "no such camera")
    return cam


@router.get("/cameras/{name}/snapshot", responses=ERRORS, response_class=FileResponse)
def camera_snapshot(request: Request, name: CameraName, _: Viewer) -> FileResponse:
    """The latest annotated live image of a camera (JPEG), found through the camera's status record."""
    client = _redis(request)
    if name not in views.camera_names(client, _config(request)):
        raise HTTPException(404, "no such camera")
    stored = client.hget(camera_key(name), "snapshot")
    path = _media_file(request, views.text(stored) if stored is not None else None, "no live picture of this camera")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


class ZoneEdit(BaseModel):
    """A polygon drawn on the camera's picture, in relative (0..1) coordinates."""

    points: list[tuple[float, float]] = Field(min_length=3, max_length=100, description="Corners, each (x, y) in 0..1.")


class ZoneSaved(BaseModel):
    """What a saved zone looks like in streams.yaml, and the camera with its zones as the file now has them."""

    saved: str = Field(description="The zone's name.")
    snippet: str = Field(description="The zone's line in streams.yaml.")
    camera: views.CameraDetail


ZONE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {"description": "Not an admin, or CSRF token missing"},
    409: {"description": "The file cannot be edited safely there, or it changed meanwhile"},
    422: {"description": "Bad zone name or points, or the file would become invalid"},
}


@router.put("/cameras/{name}/zones/{zone}", responses=ZONE_ERRORS)
def save_zone(request: Request, name: CameraName, zone: ZoneName, body: ZoneEdit, user: Admin) -> ZoneSaved:
    """Write the zone into streams.yaml (admins only), changing no other byte; the running engine picks it up by
    hot reload."""
    config = _config(request)
    if config is None or name not in config.config.cameras:
        raise HTTPException(404, "no such camera")
    problem = name_problem(zone)
    if problem is not None:
        raise HTTPException(422, f"zone name {zone!r} {problem}")
    outside = next((i for i, point in enumerate(body.points, 1) if not all(0 <= v <= 1 for v in point)), None)
    if outside is not None:
        raise HTTPException(422, f"points must be relative coordinates between 0 and 1 (corner {outside} is not)")
    try:
        saved = set_zone(config.path, name, zone, body.points)
    except KeyError:
        raise HTTPException(404, "no such camera") from None
    except ZoneEditError as exc:
        raise HTTPException(409, views.shown(str(exc))) from None
    except ConfigError as exc:
        raise HTTPException(422, "; ".join(_problem_text(p) for p in exc.problems)) from None
    log.info("user %s saved zone %s of camera %s to %s", user.name, zone, name, config.path)
    camera = views.camera_detail(_redis(request), saved, name)
    assert camera is not None  # the camera is in the config just saved
    return ZoneSaved(saved=zone, snippet=zone_snippet(zone, body.points), camera=camera)


def _problem_text(problem: ConfigProblem) -> str:
    """A config problem as the page may show it: where in the file (as keys, not a server path) and what."""
    where = ".".join(str(part) for part in problem.path)
    return views.shown(f"{where}: {problem.message}" if where else problem.message)


def incident_filter(
    camera: Annotated[str | None, Query(max_length=200, description="Only this camera.")] = None,
    kind: Annotated[str | None, Query(max_length=64, description="Only this type (gathering, ...).")] = None,
    status: Annotated[
        Literal["open", "closed", "acknowledged", "false_alarm"] | None,
        Query(
            description="open: ongoing, not reviewed; closed: ended (reviewed or not); acknowledged, false_alarm: "
            "reviewed so."
        ),
    ] = None,
    since: Annotated[datetime | None, Query(description="Opened at or after (ISO 8601; no zone = local).")] = None,
    until: Annotated[datetime | None, Query(description="Opened at or before (ISO 8601; no zone = local).")] = None,
) -> views.IncidentFilter:
    """The incident list's filters (also those of its episodes)."""
    return views.IncidentFilter(camera, kind, status, _timestamp(since), _timestamp(until))


Filters = Annotated[views.IncidentFilter, Depends(incident_filter)]


@router.get("/incidents", responses=ERRORS)
def list_incidents(
    request: Request,
    _: Viewer,
    where: Filters,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> views.IncidentPage:
    """Incidents, newest first, filtered and paginated."""
    return views.find_incidents(_redis(request), where, offset=offset, limit=limit)


def _timestamp(value: datetime | None) -> float | None:
    if value is None:
        return None
    try:
        return value.timestamp()
    except (OverflowError, OSError, ValueError):  # years far outside what the platform's clock knows
        raise HTTPException(422, "time out of range") from None


@router.get("/incidents/{incident_id}", responses=ERRORS)
def get_incident(request: Request, incident_id: IncidentId, _: Viewer) -> views.IncidentDetail:
    """Everything about one incident: media links, announcements, timeline, audit trail."""
    return views.detail(_incident(request, incident_id))


def _record_media(request: Request, incident: Incident, key: Literal["clip", "snapshot"]) -> Path:
    """One of the incident's files, found through its record (never a path from the request)."""
    if incident.extra.get("media_expired"):
        raise HTTPException(404, "file no longer available (expired or deleted)")
    return _media_file(request, incident.clip if key == "clip" else incident.snapshot)


def _media_response(path: Path, media_type: str) -> FileResponse:
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=300"})


def _incident_media(
    request: Request, incident_id: str, key: Literal["clip", "snapshot"], media_type: str
) -> FileResponse:
    return _media_response(_record_media(request, _incident(request, incident_id), key), media_type)


@router.get("/incidents/{incident_id}/clip", responses=ERRORS, response_class=FileResponse)
def incident_clip(request: Request, incident_id: IncidentId, _: Viewer) -> FileResponse:
    """The incident's original MP4 clip as the camera encoded it (H.264, or HEVC tagged ``hvc1``: see
    ``/playable``); supports HTTP range requests (seeking in the browser)."""
    return _incident_media(request, incident_id, "clip", "video/mp4")


class PlayableInfo(BaseModel):
    """What a browser can play of the incident's clip. HEVC clips get an H.264 copy, made once in the background
    (started when the clip is cut, or on the first view that needs it); the original stays for download."""

    playable_state: Literal["not_needed", "missing", "pending", "ready", "failed"] = Field(
        description="not_needed: the original plays everywhere; missing: no copy yet; pending: being made; "
        "ready; failed (see error)."
    )
    codec: str | None = Field(None, description="Video codec of the original clip (h264, hevc...).")
    percent: int | None = Field(None, description="Progress while pending (frames done / total).")
    error: str | None = None
    url: str | None = Field(None, description="What to play: the original when not_needed, the copy when ready.")
    original_url: str = Field(description="The original clip, for browsers that play it and for download.")


def _playables(request: Request) -> PlayableCopies:
    copies = getattr(request.app.state, "playable", None)
    if copies is None:
        raise HTTPException(404, "playable copies need the server's config")
    return cast(PlayableCopies, copies)


def _playable_info(incident_id: str, status: PlayableStatus) -> PlayableInfo:
    base = f"/api/incidents/{incident_id}/clip"
    url = {"not_needed": base, "ready": f"{base}/playable"}.get(status.state)
    error = views.shown(status.error) if status.error else None
    return PlayableInfo(
        playable_state=status.state, codec=status.codec, percent=status.percent, error=error, url=url, original_url=base
    )


@router.get("/incidents/{incident_id}/playable", responses=ERRORS)
def playable_status(
    request: Request,
    incident_id: IncidentId,
    _: Viewer,
    prepare: Annotated[bool, Query(description="Start making the copy if it is missing.")] = False,
) -> PlayableInfo:
    """Whether the clip plays as is, or where its browser-playable (H.264) copy stands."""
    incident = _incident(request, incident_id)
    clip = _record_media(request, incident, "clip")
    copies = _playables(request)
    return _playable_info(incident_id, (copies.prepare if prepare else copies.status)(incident, clip))


@router.get(
    "/incidents/{incident_id}/clip/playable",
    responses={
        **ERRORS,
        202: {"model": PlayableInfo, "description": "The copy is being made: poll, then ask again"},
        409: {"description": "The copy could not be made (the original is still at .../clip)"},
    },
    response_class=FileResponse,
)
def incident_clip_playable(request: Request, incident_id: IncidentId, _: Viewer) -> Any:
    """A clip every browser plays: the original if it is H.264, else its H.264 copy (202 with progress while it
    is being made, starting it if missing)."""
    incident = _incident(request, incident_id)
    clip = _record_media(request, incident, "clip")
    status = _playables(request).prepare(incident, clip)
    if status.state == "not_needed":
        return _media_response(clip, "video/mp4")
    if status.state == "ready":
        return _media_response(_media_file(request, str(transcode.copy_path(clip))), "video/mp4")
    if status.state == "failed":
        raise HTTPException(409, f"no playable copy: {views.shown(status.error or 'unknown error')}")
    return JSONResponse(_playable_info(incident_id, status).model_dump(), status_code=202)


@router.get("/incidents/{incident_id}/snapshot", responses=ERRORS, response_class=FileResponse)
def incident_snapshot(request: Request, incident_id: IncidentId, _: Viewer) -> FileResponse:
    """The incident's annotated JPEG snapshot."""
    return _incident_media(request, incident_id, "snapshot", "image/jpeg")


class ExportStatus(BaseModel):
    """Where a blurred export of the incident's clip stands."""

    state: Literal["missing", "running", "ready", "failed"]
    error: str | None = None
    url: str | None = Field(None, description="Download link once ready.")


def _exports(request: Request) -> ExportJobs:
    jobs = getattr(request.app.state, "exports", None)
    if jobs is None:
        raise HTTPException(404, "exports need the server's config")
    return cast(ExportJobs, jobs)


def _export_status(request: Request, incident_id: str) -> ExportStatus:
    state, error = _exports(request).state(incident_id)
    url = f"/api/incidents/{incident_id}/export.mp4" if state == "ready" else None
    return ExportStatus(state=state, error=views.shown(error) if error else None, url=url)


@router.post("/incidents/{incident_id}/export", responses=ERRORS, status_code=202)
def start_export(request: Request, incident_id: IncidentId, user: Operator) -> ExportStatus:
    """Make a copy of the clip with people's heads blurred, for sharing outside the center."""
    incident = _incident(request, incident_id)
    if incident.extra.get("media_expired"):
        raise HTTPException(404, "file no longer available (expired or deleted)")
    clip = _media_file(request, incident.clip)
    _exports(request).start(incident_id, clip)
    log.info("user %s exported incident %s (blurred)", user.name, incident_id)
    return _export_status(request, incident_id)


@router.get("/incidents/{incident_id}/export", responses=ERRORS)
def export_status(request: Request, incident_id: IncidentId, _: Viewer) -> ExportStatus:
    """Whether the blurred export is being made, ready or failed."""
    _incident(request, incident_id)
    return _export_status(request, incident_id)


@router.get("/incidents/{incident_id}/export.mp4", responses=ERRORS, response_class=FileResponse)
def download_export(request: Request, incident_id: IncidentId, _: Viewer) -> FileResponse:
    """The blurred MP4, as a download."""
    _incident(request, incident_id)
    path = _exports(request).path(incident_id)
    if not path.is_file():
        raise HTTPException(404, "no export yet: POST .../export first")
    return FileResponse(path, media_type="video/mp4", filename=f"incident-{incident_id}-blurred.mp4")


def act(client: redis.Redis, incident_id: str, user: User, action: str, note: str | None) -> None:
    """Apply a staff action atomically and append it to the record's audit trail (404: no such incident, 409:
    already in that state). One incident's action, whether from its page or a bulk review."""
    new_status = {"acknowledge": "acknowledged", "false_alarm": "false_alarm"}.get(action)
    entry = {"user": user.name, "action": action, "at": views.now_iso(), "note": note or None}

    def change(rec: dict[str, Any]) -> None:
        if new_status is not None:
            if rec.get("status") == new_status:
                last = next((a for a in reversed(rec.get("audit") or []) if a.get("action") == action), None)
                who = f" by {last['user']} at {last['at']}" if last else ""
                raise HTTPException(409, f"already {new_status}{who}")
            rec["status"] = new_status
        rec.setdefault("audit", []).append(entry)

    try:
        IncidentStore(client).update(incident_id, change, f"incident_{new_status or 'note'}")
    except KeyError:
        raise HTTPException(404, "no such incident") from None
    log.info("%s: %s on incident %s", user.name, action, incident_id)


def _act(request: Request, incident_id: str, user: User, action: str, note: str | None) -> views.IncidentDetail:
    act(_redis(request), incident_id, user, action, note)
    return views.detail(_incident(request, incident_id))


WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {"description": "Role too low or CSRF token missing"},
    409: {"description": "Already in that state"},
}


def _action_route(action: str, doc: str) -> Callable[..., views.IncidentDetail]:
    def route(
        request: Request, incident_id: IncidentId, user: Operator, body: NoteBody | None = None
    ) -> views.IncidentDetail:
        note = body.note if body else None
        if action == "note" and not (note and note.strip()):
            raise HTTPException(422, "a note needs text")
        return _act(request, incident_id, user, action, note)

    route.__doc__ = doc
    route.__name__ = f"incident_{action}"
    return route


router.post("/incidents/{incident_id}/acknowledge", responses=WRITE_ERRORS)(
    _action_route("acknowledge", "Operator: mark the incident as seen and handled (kept in the audit trail).")
)
router.post("/incidents/{incident_id}/false_alarm", responses=WRITE_ERRORS)(
    _action_route("false_alarm", "Operator: mark the incident as a false alarm (kept in the audit trail).")
)
router.post("/incidents/{incident_id}/note", responses=WRITE_ERRORS)(
    _action_route("note", "Operator: add a remark to the audit trail.")
)


@router.get(
    "/events",
    responses={**ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}},
    response_class=StreamingResponse,
)
def events(request: Request, _: Viewer) -> StreamingResponse:
    """Live updates as server-sent events: ``incident`` (opened/closed/acknowledged...) and ``camera`` changes.

    Reconnecting browsers send ``Last-Event-ID`` and get the incident events they missed.
    """
    return StreamingResponse(
        event_stream(request, _redis(request), _config(request), request.headers.get("last-event-id")),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
