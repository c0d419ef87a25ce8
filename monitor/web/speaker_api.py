"""Speakers on the page: checked health, last announcement result, operator test.

A test plays a generated two-beep tone (no file is read, nothing but the speaker itself is contacted) through one
configured speaker from the web process, within ``TEST_DEADLINE_S`` in all. Tests of one speaker never overlap,
whichever web process serves them: a Redis lock per speaker, a second press gets 409. Every test is recorded as
the speaker's last test and in the speaker audit trail (who, when, result). A name is only ever looked up in the
config's speaker table: nothing in the request becomes a path.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from redis.exceptions import LockError

from monitor.config.models import NAME_MAX
from monitor.incident import iso
from monitor.redact import scrub
from monitor.store.incidents import IncidentStore, speaker_lock_key
from monitor.web import speaker_state, views
from monitor.web.api import ERRORS, WRITE_ERRORS, Operator, Viewer, _config, _redis
from speakers import Pcm, SpeakerError, create_speaker
from speakers.config import SpeakerConfig
from speakers.deadline import Deadline

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["monitor"])

TEST_DEADLINE_S = 20.0  # a test answers by then, however the speaker behaves (its playback is stopped then)
LOCK_MARGIN_S = 5.0  # the lock outlives the deadline by this much, and expires on its own if the process dies
TONE_HZ = 1000.0
BEEP_S, GAP_S = 0.4, 0.2
TONE_LEVEL = 0.25  # -12 dBFS: clearly audible, never clipping after a speaker's gain

SpeakerName = Annotated[str, PathParam(min_length=1, max_length=NAME_MAX, description="Speaker name from the config.")]


class SpeakerHealthView(BaseModel):
    """The engine's latest check: ok, failed (problem says why), unverifiable (problem says why not), unknown."""

    state: speaker_state.HealthStateName
    problem: str | None
    checked_at: str | None


class LastAnnouncement(BaseModel):
    """The speaker's last announcement played by the engine."""

    at: str | None
    ok: bool
    error: str | None
    incident_id: str | None
    camera: str | None


class SpeakerTest(BaseModel):
    """The result of a test from the web page."""

    speaker: str
    at: str | None
    ok: bool
    error: str | None
    user: str | None
    duration_s: float | None = None


class SpeakerBusy(BaseModel):
    """Who is using the speaker right now: an operator talking, or a test (announcements wait meanwhile)."""

    what: Literal["talk", "test"]
    user: str | None = None
    since: str | None = None


class SpeakerView(BaseModel):
    """One configured speaker as the speakers page shows it (no credentials, no server paths)."""

    name: str
    kind: str
    target: str = Field(description="Where it plays, URLs redacted.")
    groups: list[str]
    cameras: list[str] = Field(description="Cameras whose announcements play on it.")
    health: SpeakerHealthView
    last_announcement: LastAnnouncement | None
    last_test: SpeakerTest | None
    busy: SpeakerBusy | None = Field(None, description="Talking or testing now (the lease is held); None when free.")


def _shown(value: str | None) -> str | None:
    return views.shown(value) if value else None


def _at(data: dict[str, str]) -> str | None:
    """The record's time: an ISO string, or one made from seconds since the epoch."""
    if data.get("at"):
        return data["at"]
    try:
        return iso(float(data["checked_ts"])) if data.get("checked_ts") else None
    except ValueError:
        return None


def view(info: speaker_state.SpeakerInfo) -> SpeakerView:
    """A speaker's records shaped for the page."""
    health, announced, tested = info.records.health, info.records.announced, info.records.tested
    return SpeakerView(
        name=info.name,
        kind=info.kind,
        target=views.strip_paths(info.target),
        groups=list(info.groups),
        cameras=list(info.cameras),
        health=SpeakerHealthView(
            state=speaker_state.health_state(health),
            problem=_shown(health.get("problem")),
            checked_at=_at(health),
        ),
        last_announcement=LastAnnouncement(
            at=_at(announced),
            ok=announced.get("ok") == "1",
            error=_shown(announced.get("error")),
            incident_id=announced.get("incident") or None,
            camera=announced.get("camera") or None,
        )
        if announced
        else None,
        last_test=SpeakerTest(
            speaker=info.name,
            at=_at(tested),
            ok=tested.get("ok") == "1",
            error=_shown(tested.get("error")),
            user=tested.get("user") or None,
        )
        if tested
        else None,
        busy=_busy(info.records.holder),
    )


def _busy(holder: dict[str, Any] | None) -> SpeakerBusy | None:
    if holder is None:
        return None
    if holder.get("what") != "talk":
        return SpeakerBusy(what="test")
    return SpeakerBusy(what="talk", user=_text_or_none(holder.get("user")), since=_text_or_none(holder.get("since")))


def _text_or_none(value: Any) -> str | None:
    return str(value) if value else None


@router.get("/speakers", responses=ERRORS)
def list_speakers(request: Request, _: Viewer) -> list[SpeakerView]:
    """Every configured speaker: checked health, last announcement and last test, cameras and groups using it."""
    return [view(info) for info in speaker_state.speakers(_redis(request), _config(request))]


def beeps(rate: int) -> Pcm:
    """Two short beeps (faded in and out, so no click): unmistakably a test, about a second long."""
    t = np.arange(int(BEEP_S * rate)) / rate
    beep = np.sin(2 * np.pi * TONE_HZ * t) * TONE_LEVEL
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    beep = (beep * fade * 32767).astype(np.int16)
    gap = np.zeros(int(GAP_S * rate), dtype=np.int16)
    return Pcm(np.concatenate([beep, gap, beep]), rate)


def play_beeps(name: str, config: SpeakerConfig) -> str | None:
    """Play the test tone on one speaker within TEST_DEADLINE_S; the problem, or None when it played."""
    stop = threading.Event()
    try:
        speaker = create_speaker(name, config)
        deadline = Deadline(TEST_DEADLINE_S, f"speaker {name!r}", "speaker test")
        deadline.run(lambda: speaker.play(beeps(speaker.sample_rate), stop))
    except (SpeakerError, OSError, ValueError) as exc:
        return str(exc)
    finally:
        stop.set()  # past the deadline: the playback still running ends within a packet
    return None


@router.post(
    "/speakers/{name}/test",
    responses={**WRITE_ERRORS, 404: {"description": "No such speaker"}, 409: {"description": "A test is playing"}},
)
def run_speaker_test(request: Request, name: SpeakerName, user: Operator) -> SpeakerTest:
    """Operator: play a short test tone on one speaker; the result is kept as its last test and in the audit."""
    config = _config(request)
    speakers = config.config.speakers if config is not None else {}
    if name not in speakers:
        raise HTTPException(404, "no such speaker")
    client = _redis(request)
    lock = client.lock(speaker_lock_key(name), timeout=TEST_DEADLINE_S + LOCK_MARGIN_S, blocking=False)
    if not lock.acquire():
        raise HTTPException(409, "the speaker is already in use (a test or a live talk)")
    try:
        started = time.time()
        problem = play_beeps(name, speakers[name])
        ended = time.time()
    finally:
        with contextlib.suppress(LockError):
            lock.release()
    error = scrub(problem) if problem else None
    ok, at = problem is None, iso(ended)
    entry: dict[str, str | int | float] = {"at": at or "", "ts": ended, "ok": int(ok), "error": error or "",
                                           "user": user.name}  # fmt: skip
    audit = {"at": at, "user": user.name, "action": "speaker_test", "speaker": name, "ok": ok, "error": error}
    IncidentStore(client).record_speaker_test(name, entry, audit)
    log.info("speaker %s tested by %s: %s", name, user.name, "ok" if ok else error)
    return SpeakerTest(
        speaker=name, at=at, ok=ok, error=_shown(error), user=user.name,
        duration_s=round(ended - started, 2),
    )  # fmt: skip
