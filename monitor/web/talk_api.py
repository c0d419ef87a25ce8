"""Talk-down from the page: an operator's microphone live to speakers over a WebSocket, and typed messages.

Live protocol on ``/api/talk`` (operators and admins; session cookie and same-origin Origin, like live video):
the page's first message is JSON naming the targets, ``{"camera": "gate"}`` (the camera's speakers) and/or
``{"targets": ["horn1", "square"]}`` (speakers or groups), with ``"rate"`` (the PCM's sample rate). Unknown
names get ``{"type": "error"}`` and the socket closes. Then ``{"type": "started", "id", "speakers", "busy"}``,
and the page sends binary messages of mono 16-bit little-endian PCM (20 ms each, from an AudioWorklet). A text
``{"type": "stop"}`` or closing the socket ends the talk; so do ``talk.max_s``, the session ending and server
shutdown. The server answers ``{"type": "ended", "talk": ...}`` (each speaker's delivery) and closes.

Typed messages: ``/api/talk/preview`` renders the text with espeak-ng and returns the WAV for the browser to play;
``/api/talk/say`` plays it through the chosen speakers the same way a live talk does (taking the speakers from
recorded announcements, which play after it), recorded in the same audit list. Names are only ever looked up in
the config; recordings are served by talk id from the audit record, never by a path from the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import redis
from fastapi import APIRouter, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.websockets import WebSocketState

from monitor.actions.talk import Talk
from monitor.config import LoadedConfig
from monitor.config.models import NAME_MAX
from monitor.config.watch import ConfigWatcher
from monitor.store.disk import DiskGuard
from monitor.store.talks import talk, talks
from monitor.web import speaker_state, views
from monitor.web.api import ERRORS, WRITE_ERRORS, Operator, Viewer, _config, _redis
from monitor.web.auth import Auth
from monitor.web.ws_session import (
    FORBIDDEN,
    UNAUTHORIZED,
    UNAVAILABLE,
    cookie_token,
    current_session,
    first_to_end,
    same_origin,
    watch_session,
)
from speakers import SpeakerError, create_speaker, load_announcement
from speakers.base import Talker
from speakers.groups import SpeakerGroupError, expand_speakers
from speakers.tts import TtsError, speak

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["monitor"])

FIRST_MESSAGE_S = 10.0  # the page names its targets at once; a socket that says nothing is closed
MAX_FRAME_S = 1.0  # one binary message carries at most this much audio
TEXT_MAX = 300  # a typed message: a sentence or two, not a speech
SAY_RATE = 16000
BAD_REQUEST, TOO_BIG, ENDED = 4400, 1009, 4000
TALK_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{8}$")
VOICE = r"^[A-Za-z0-9][A-Za-z0-9_+-]{0,63}$"


class TalkTargets(BaseModel):
    """Who hears the talk: a camera's speakers and/or named speakers and groups."""

    camera: str | None = Field(None, min_length=1, max_length=NAME_MAX, description="Camera: its speakers.")
    targets: list[Annotated[str, Field(min_length=1, max_length=NAME_MAX)]] = Field(
        default_factory=list, max_length=100, description="Speakers or speaker groups (instead of the camera's)."
    )


class TalkStart(TalkTargets):
    """The live talk's first message."""

    rate: int = Field(16000, ge=8000, le=48000, description="Sample rate of the PCM frames that follow.")


class SayBody(TalkTargets):
    """A typed message to speak."""

    text: str = Field(min_length=1, max_length=TEXT_MAX, description="What to say.")
    voice: str | None = Field(None, pattern=VOICE, description="espeak-ng voice; default talk.voice.")


class PreviewBody(BaseModel):
    """A typed message to hear on the page first."""

    text: str = Field(min_length=1, max_length=TEXT_MAX)
    voice: str | None = Field(None, pattern=VOICE)


class TalkTarget(BaseModel):
    """One choice for the page's target list."""

    value: str = Field(description="What to send back: 'camera:NAME', 'group:NAME' or 'speaker:NAME'.")
    label: str
    speakers: list[str]


class TalkSpeaker(BaseModel):
    """One speaker's delivery in a talk."""

    speaker: str
    ok: bool
    error: str | None
    packets: int
    bytes: int
    audio_s: float
    dropped_s: float


class TalkView(BaseModel):
    """A finished talk as the page shows it (no server paths)."""

    id: str
    kind: str = Field(description="live (microphone) or text (typed message).")
    user: str
    camera: str | None
    text: str | None
    started: str | None
    duration_s: float
    ok: bool
    speakers: list[TalkSpeaker]
    audio_url: str | None = Field(description="The recording, when talk.record was on.")
    audio_error: str | None


def talk_view(record: dict[str, Any]) -> TalkView:
    """A stored talk record shaped for the page: errors scrubbed, the recording as a URL by id."""
    results = [
        TalkSpeaker(
            speaker=str(r.get("speaker", "")),
            ok=bool(r.get("ok")),
            error=views.shown(str(r["error"])) if r.get("error") else None,
            packets=int(r.get("packets") or 0),
            bytes=int(r.get("bytes") or 0),
            audio_s=float(r.get("audio_s") or 0),
            dropped_s=float(r.get("dropped_s") or 0),
        )
        for r in record.get("speakers") or []
        if isinstance(r, dict)
    ]
    talk_id = str(record.get("id", ""))
    return TalkView(
        id=talk_id,
        kind=str(record.get("kind", "live")),
        user=str(record.get("user", "")),
        camera=record.get("camera"),
        text=record.get("text"),
        started=record.get("started"),
        duration_s=float(record.get("duration_s") or 0),
        ok=bool(record.get("ok")),
        speakers=results,
        audio_url=f"/api/talks/{talk_id}/audio" if record.get("audio") else None,
        audio_error=record.get("audio_error"),
    )


def resolve_targets(config: LoadedConfig | None, wanted: TalkTargets) -> list[str]:
    """The speakers a talk goes to; ValueError (the page shows it) for unknown names or none at all."""
    if config is None:
        raise ValueError("no configuration loaded: no speakers")
    cfg = config.config
    if wanted.camera is not None and wanted.camera not in cfg.cameras:
        raise ValueError(f"no such camera: {wanted.camera!r}")
    if wanted.targets:
        try:
            names = expand_speakers(wanted.targets, cfg.speaker_groups, cfg.speakers)
        except SpeakerGroupError as exc:
            raise ValueError(str(exc)) from None
    elif wanted.camera is not None:
        names = speaker_state.camera_speakers(config)[wanted.camera]
    else:
        raise ValueError("name a camera or speakers to talk to")
    if not names:
        raise ValueError("no speakers to talk to (this camera has none configured)")
    return names


def _talkers(config: LoadedConfig, names: list[str]) -> dict[str, Talker]:
    out: dict[str, Talker] = {}
    for name in names:
        speaker = create_speaker(name, config.config.speakers[name])
        if not isinstance(speaker, Talker):
            raise ValueError(f"speaker {name!r} cannot take live audio")
        out[name] = speaker
    return out


def new_talk(
    client: redis.Redis, config: LoadedConfig | None, wanted: TalkTargets, user: str, rate: int, **extra: Any
) -> Talk:
    """A talk to the resolved targets, recording under data_dir/talks/ when ``talk.record`` is on."""
    names = resolve_targets(config, wanted)
    assert config is not None  # resolve_targets refuses without one
    speakers = _talkers(config, names)
    record = config.config.talk.record
    return Talk(
        client,
        speakers,
        user=user,
        camera=wanted.camera,
        rate=rate,
        record_dir=config.data_dir / "talks" if record else None,
        disk=DiskGuard(config.data_dir, config.config.retention.min_free_mb) if record else None,
        **extra,
    )


# ---------------------------------------------------------------------------------------------- live talk


def _ws_config(websocket: WebSocket) -> LoadedConfig | None:
    """The newest valid streams.yaml (as ``api._config`` reads it for requests)."""
    watcher: ConfigWatcher | None = websocket.app.state.config
    if watcher is None:
        return None
    watcher.poll()
    return watcher.current


async def _refuse(websocket: WebSocket, code: int, error: str) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.send_text(json.dumps({"type": "error", "error": error}, ensure_ascii=False))
        await websocket.close(code=code, reason=error[:120])


async def _first_message(websocket: WebSocket) -> TalkStart | str:
    """The page's target message, or why it was refused."""
    try:
        text = await asyncio.wait_for(websocket.receive_text(), FIRST_MESSAGE_S)
        return TalkStart.model_validate_json(text)
    except TimeoutError:
        return "no target message"
    except ValidationError as exc:
        return "bad target message: " + "; ".join(e["msg"] for e in exc.errors())
    except (KeyError, RuntimeError):  # a binary message first, or the socket went away
        return "the first message must be the JSON target message"


async def _receive(websocket: WebSocket, talk: Talk, max_s: float) -> tuple[int, str]:
    """Feed the talk until the page stops, leaves, sends garbage or talks longer than ``max_s``."""
    max_bytes = int(talk.rate * MAX_FRAME_S) * 2
    started = time.monotonic()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return 1000, "the page left"
        data = message.get("bytes")
        if data is None:
            with contextlib.suppress(ValueError):
                if json.loads(message.get("text") or "").get("type") == "stop":
                    return 1000, "stopped"
            continue
        if len(data) > max_bytes or len(data) % 2:
            return TOO_BIG, f"audio frames must be 16-bit and at most {MAX_FRAME_S:g} s"
        talk.push(np.frombuffer(data, dtype="<i2").astype(np.int16))
        if talk.duration_s >= max_s or time.monotonic() - started >= max_s:
            return ENDED, f"the talk reached its limit of {max_s:g} s (talk.max_s)"


@router.websocket("/talk")
async def talk_socket(websocket: WebSocket) -> None:
    """Live talk from the page's microphone to speakers (see the module docstring); operators and admins."""
    if not same_origin(websocket.headers.get("origin"), websocket.headers.get("host")):
        await websocket.close(code=FORBIDDEN)  # before accepting: the handshake fails with HTTP 403
        return
    auth: Auth = websocket.app.state.auth
    token = cookie_token(websocket)
    await websocket.accept()
    try:
        session = await current_session(auth, token)
    except redis.RedisError:
        await _refuse(websocket, UNAVAILABLE, "the user store (Redis) cannot be reached")
        return
    if session is None:
        await _refuse(websocket, UNAUTHORIZED, "login required")
        return
    if not session.user.can("operator"):
        await _refuse(websocket, FORBIDDEN, "needs the operator role")
        return
    start = await _first_message(websocket)
    if isinstance(start, str):
        await _refuse(websocket, BAD_REQUEST, start)
        return
    config = _ws_config(websocket)
    client: redis.Redis = websocket.app.state.redis
    try:
        the_talk = new_talk(client, config, start, session.user.name, start.rate)
    except (ValueError, SpeakerError) as exc:
        await _refuse(websocket, BAD_REQUEST, views.shown(str(exc)))
        return
    assert config is not None  # resolve_targets refuses without one
    await _run(websocket, auth, token, the_talk, config.config.talk.max_s)


async def _run(websocket: WebSocket, auth: Auth, token: str, the_talk: Talk, max_s: float) -> None:
    speakers = await asyncio.to_thread(the_talk.start)
    code, reason = 1000, "ended"
    try:
        if not speakers:
            code, reason = BAD_REQUEST, "every chosen speaker is busy (a test or another talk)"
            await websocket.send_text(json.dumps({"type": "error", "error": reason, "busy": the_talk.busy}))
        else:
            await websocket.send_text(json.dumps({"type": "started", "id": the_talk.id, "speakers": speakers,
                                                  "busy": the_talk.busy}, ensure_ascii=False))  # fmt: skip
            code, reason = await first_to_end(
                _receive(websocket, the_talk, max_s), watch_session(websocket, auth, token, "operator")
            )
    finally:
        record = await asyncio.to_thread(the_talk.finish)  # also when the page vanished: speakers freed, recorded
    if websocket.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):  # the page may be gone already
            ended = {"type": "ended", "reason": reason, "talk": talk_view(record).model_dump()}
            await websocket.send_text(json.dumps(ended, ensure_ascii=False))
            await websocket.close(code=code, reason=reason[:120])


# ---------------------------------------------------------------------------------------------- HTTP routes


@router.get("/talk/targets", responses=WRITE_ERRORS)
def talk_targets(request: Request, user: Viewer) -> list[TalkTarget]:
    """What a talk can go to: each camera's speakers, each group, each speaker (operators and admins)."""
    if not user.can("operator"):
        raise HTTPException(403, "needs the operator role")
    config = _config(request)
    if config is None:
        return []
    cfg = config.config
    out = [TalkTarget(value=f"camera:{cam}", label=f"摄像头 camera {cam}", speakers=names)
           for cam, names in speaker_state.camera_speakers(config).items() if names]  # fmt: skip
    for group in cfg.speaker_groups:
        with contextlib.suppress(SpeakerGroupError):
            members = expand_speakers([group], cfg.speaker_groups)
            out.append(TalkTarget(value=f"group:{group}", label=f"组 group {group}", speakers=members))
    out += [TalkTarget(value=f"speaker:{name}", label=f"喇叭 speaker {name} ({spk.kind})", speakers=[name])
            for name, spk in sorted(cfg.speakers.items())]  # fmt: skip
    return out


@router.get("/talks", responses=ERRORS)
def list_talks(
    request: Request,
    _: Viewer,
    camera: Annotated[str | None, Query(max_length=NAME_MAX)] = None,
    speaker: Annotated[str | None, Query(max_length=NAME_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[TalkView]:
    """Recent talks, newest first: on one camera or one speaker, or all."""
    found = []
    for record in talks(_redis(request)):
        names = [r.get("speaker") for r in record.get("speakers") or [] if isinstance(r, dict)]
        if (camera is None or record.get("camera") == camera) and (speaker is None or speaker in names):
            found.append(talk_view(record))
            if len(found) >= limit:
                break
    return found


TalkId = Annotated[str, PathParam(min_length=1, max_length=40, description="A talk's id, from /api/talks.")]


@router.get("/talks/{talk_id}/audio", responses=ERRORS, response_class=FileResponse)
def talk_audio(request: Request, talk_id: TalkId, _: Viewer) -> FileResponse:
    """A talk's recording (WAV), found through its audit record."""
    record = talk(_redis(request), talk_id) if TALK_ID.match(talk_id) else None
    config = _config(request)
    if record is None or config is None or record.get("audio") != f"{talk_id}.wav":
        raise HTTPException(404, "no recording for this talk")
    path = config.data_dir / "talks" / f"{talk_id}.wav"
    if not path.is_file():
        raise HTTPException(404, "the recording is gone (deleted or never saved)")
    return FileResponse(path, media_type="audio/wav", headers={"Cache-Control": "private, max-age=300"})


def _speech(config: LoadedConfig | None, text: str, voice: str | None) -> Path:
    if config is None:
        raise HTTPException(404, "no configuration loaded")
    try:
        return speak(text, voice or config.config.talk.voice, config.data_dir / "tts")
    except TtsError as exc:
        raise HTTPException(422, f"语音合成失败 cannot speak: {exc}") from None


@router.post("/talk/preview", responses={**WRITE_ERRORS, 422: {"description": "espeak-ng or the voice missing"}})
def talk_preview(request: Request, body: PreviewBody, _: Operator) -> Response:
    """The typed message as speech (WAV), for the operator to hear before playing it on the speakers."""
    path = _speech(_config(request), body.text, body.voice)
    return Response(path.read_bytes(), media_type="audio/wav")


@router.post("/talk/say", responses={**WRITE_ERRORS, 422: {"description": "Unknown targets, or cannot speak"}})
def talk_say(request: Request, body: SayBody, user: Operator) -> TalkView:
    """Speak the typed message on the chosen speakers now (they are taken like a live talk); answers when done."""
    config = _config(request)
    path = _speech(config, body.text, body.voice)
    audio = load_announcement(path, SAY_RATE)
    assert config is not None  # _speech checked it
    try:
        the_talk = new_talk(_redis(request), config, body, user.name, SAY_RATE, kind="text", text=body.text,
                            buffer_s=audio.duration_s + 1.0)  # fmt: skip
    except (ValueError, SpeakerError) as exc:
        raise HTTPException(422, views.shown(str(exc))) from None
    if not the_talk.start():
        the_talk.finish()
        raise HTTPException(409, "every chosen speaker is busy (a test or another talk)")
    the_talk.push(audio.samples)
    return talk_view(the_talk.finish())
