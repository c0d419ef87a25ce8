"""Browser-playable copies of H.265 incident clips: made once, in the background, recorded on the incident.

A copy is started when the engine records a clip (this server follows the incident events) or when a page asks
for one that is missing. It is made on a low-priority worker (``JobRunner``, nice 10, two codec threads), so the
cameras' detection in the same process keeps its CPU. The incident's ``playable`` field says where it stands:
``{"state": "pending"|"ready"|"failed", "percent", "error", "retry", "updated_ts", "clip"}``. ``pending`` is
claimed in a Redis transaction, so two web servers on one store never make the same copy twice; a ``pending``
whose maker stopped reporting for ``STALE_S`` may be taken over. The copy lives beside the clip
(``transcode.copy_path``) and is deleted with it by retention.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av
import redis

from monitor.config import LoadedConfig
from monitor.incident import Incident
from monitor.ingest import transcode
from monitor.store.disk import DiskFull, DiskGuard, is_disk_full
from monitor.store.incidents import EVENTS, IncidentStore
from monitor.web import views
from monitor.web.jobs import JobRunner, Report

log = logging.getLogger(__name__)

PlayableState = Literal["not_needed", "missing", "pending", "ready", "failed"]
FIELD = "playable"
STALE_S = 60.0  # a pending copy nobody reported on for this long was abandoned (its server stopped)
HEARTBEAT_S = 2.0  # how often a running copy writes its progress to the record
DISK_CHECK_FRAMES = 25
FOLLOW_BLOCK_MS = 1000


class Stopped(Exception):
    """The server is shutting down: the copy is abandoned and started again on the next view."""


@dataclass(frozen=True, slots=True)
class PlayableStatus:
    """Where the browser-playable copy of an incident's clip stands."""

    state: PlayableState
    codec: str | None = None  # of the original clip
    percent: int | None = None  # while pending, when the frame count is known
    error: str | None = None


@functools.lru_cache(maxsize=1024)
def _codec(path: str, mtime_ns: int, size: int) -> str:
    """The clip's codec, probed once per version of the file (the key changes if the file does)."""
    return transcode.video_codec(Path(path))


def clip_codec(clip: Path) -> str:
    """The clip's video codec (av.FFmpegError, OSError or ValueError when it cannot be read)."""
    st = clip.stat()
    return _codec(str(clip), st.st_mtime_ns, st.st_size)


def describe(exc: BaseException) -> str:
    """A failure as staff should read it (no server path: PyAV's messages quote the file name)."""
    if is_disk_full(exc):
        return str(exc) if isinstance(exc, DiskFull) else f"disk_full: {getattr(exc, 'strerror', None) or exc}"
    if isinstance(exc, av.FFmpegError):
        return f"the clip cannot be decoded ({exc.strerror or type(exc).__name__}): it may be damaged"
    if isinstance(exc, ValueError):  # ours, already a sentence
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _percent(done: int, total: int) -> int | None:
    return min(99, done * 100 // total) if total > 0 else None


def _is_clip(stored: Any, clip: Path) -> bool:
    """Whether the record's clip path (as the engine wrote it) is ``clip`` (resolved)."""
    return isinstance(stored, str) and bool(stored) and Path(stored).resolve() == clip


def _fresh(rec: Mapping[str, Any], clip: Path, now: float) -> bool:
    """A pending record for this clip whose maker reported recently."""
    return rec.get("state") == "pending" and rec.get("clip") == str(clip) and now - rec.get("updated_ts", 0) < STALE_S


class PlayableCopies:
    """Makes, tracks and finds the H.264 copy of each HEVC incident clip."""

    def __init__(self, client: redis.Redis, config: LoadedConfig, stopping: threading.Event) -> None:
        self.store = IncidentStore(client)
        self.data_dir = config.data_dir.resolve()
        self.disk = DiskGuard(config.data_dir, config.config.retention.min_free_mb)
        self.stopping = stopping
        self._jobs = JobRunner("playable", nice=10)
        self._follower: threading.Thread | None = None

    def status(self, incident: Incident, clip: Path) -> PlayableStatus:
        """What the page can play now (never starts anything)."""
        try:
            codec = clip_codec(clip)
        except (av.FFmpegError, OSError, ValueError) as exc:
            return PlayableStatus("failed", None, error=describe(exc))
        if not transcode.needs_copy(codec):
            return PlayableStatus("not_needed", codec)
        if transcode.copy_path(clip).is_file():  # only ever there complete (renamed into place)
            return PlayableStatus("ready", codec)
        rec: Mapping[str, Any] = incident.extra.get(FIELD) or {}
        local, _ = self._jobs.state(incident.id)
        if local == "running":
            progress = self._jobs.progress(incident.id)
            return PlayableStatus("pending", codec, _percent(*progress) if progress else rec.get("percent"))
        if _fresh(rec, clip, time.time()):
            return PlayableStatus("pending", codec, rec.get("percent"))
        if rec.get("state") == "failed" and rec.get("clip") == str(clip):
            return PlayableStatus("failed", codec, error=rec.get("error"))
        return PlayableStatus("missing", codec)

    def prepare(self, incident: Incident, clip: Path) -> PlayableStatus:
        """The status, after starting the copy if it is missing (or failed for lack of disk space, now back)."""
        status = self.status(incident, clip)
        retry = status.state == "failed" and (incident.extra.get(FIELD) or {}).get("retry") and self.disk.ok()
        if status.state != "missing" and not retry:
            return status
        if not self._claim(incident.id, clip):
            return self.status(self._reload(incident), clip)
        if not self._jobs.start(incident.id, lambda report: self._make(incident.id, clip, report)):
            return self.status(self._reload(incident), clip)
        log.info("incident %s: making a browser-playable copy of its %s clip", incident.id, status.codec)
        return PlayableStatus("pending", status.codec, 0)

    def _reload(self, incident: Incident) -> Incident:
        return self.store.incident(incident.id) or incident

    def _claim(self, incident_id: str, clip: Path) -> bool:
        """Mark the copy pending unless another server is making it (one Redis transaction)."""
        taken = False

        def change(rec: dict[str, Any]) -> None:
            nonlocal taken
            current = rec.get(FIELD) or {}
            if not _is_clip(rec.get("clip"), clip) or rec.get("media_expired") or _fresh(current, clip, time.time()):
                taken = True
                return
            rec[FIELD] = {"state": "pending", "percent": 0, "clip": str(clip), "updated_ts": time.time()}

        try:
            self.store.update(incident_id, change)
        except KeyError:
            return False
        return not taken

    def _record(self, incident_id: str, clip: Path, **fields: Any) -> bool:
        """Update our claim's record; False when the clip is no longer the incident's (expired meanwhile)."""
        current = True

        def change(rec: dict[str, Any]) -> None:
            nonlocal current
            if not _is_clip(rec.get("clip"), clip) or rec.get("media_expired"):
                current = False
                return
            if fields:
                rec[FIELD] = {**(rec.get(FIELD) or {}), **fields, "clip": str(clip), "updated_ts": time.time()}
            else:
                rec.pop(FIELD, None)

        try:
            self.store.update(incident_id, change)
        except KeyError:
            return False
        return current

    def _make(self, incident_id: str, clip: Path, report: Report) -> None:
        """The job: transcode, then record the outcome (the copy is removed if the clip expired meanwhile)."""
        copy = transcode.copy_path(clip)
        last_beat = time.monotonic()

        def on_frame(done: int, total: int) -> None:
            nonlocal last_beat
            report(done, total)
            if self.stopping.is_set():
                raise Stopped("the server is shutting down")
            if done % DISK_CHECK_FRAMES == 0 and not self.disk.ok():
                raise DiskFull(self.disk.reason)
            if time.monotonic() - last_beat >= HEARTBEAT_S:
                last_beat = time.monotonic()
                self._record(incident_id, clip, state="pending", percent=_percent(done, total))

        try:
            if not self.disk.ok():
                raise DiskFull(self.disk.reason)
            frames = transcode.transcode_h264(clip, copy, on_frame)
        except Stopped:
            self._record(incident_id, clip)  # forget the claim: the next view starts it again
            raise
        except Exception as exc:
            error = describe(exc)
            self._record(incident_id, clip, state="failed", error=error, retry=is_disk_full(exc), percent=None)
            raise  # the runner logs it
        if not self._record(incident_id, clip, state="ready", percent=100, error=None):
            copy.unlink(missing_ok=True)  # retention took the clip while we worked: the copy goes with it
            return
        log.info("incident %s: playable copy ready (%d frames)", incident_id, frames)

    # -- copies started when the clip is cut -------------------------------------------------------------
    def follow(self) -> None:
        """Start following the incident events: a new clip that needs a copy gets one right away."""
        if self._follower is None:
            self._follower = threading.Thread(target=self._follow, name="playable-follow", daemon=True)
            self._follower.start()

    def _follow(self) -> None:
        last = "$"
        while not self.stopping.is_set():
            try:
                entries: Any = self.store.r.xread({EVENTS: last}, count=100, block=FOLLOW_BLOCK_MS)
                for _stream, messages in entries or []:
                    for raw_id, fields in messages:
                        last = views.text(raw_id)
                        event = {views.text(k): views.text(v) for k, v in fields.items()}
                        if event.get("type") == "incident_media" and event.get("id"):
                            self._on_media(event["id"])
            except redis.RedisError as exc:  # Redis away for a moment: views start the copies meanwhile
                log.warning("playable copies: cannot follow incident events: %s", exc)
                self.stopping.wait(5.0)
            except Exception:  # a bug must not end the follower for good
                log.exception("playable copies: following incident events failed")
                self.stopping.wait(5.0)

    def _on_media(self, incident_id: str) -> None:
        incident = self.store.incident(incident_id)
        clip = self.media_path(incident.clip) if incident is not None else None
        if incident is not None and clip is not None and not incident.extra.get("media_expired"):
            self.prepare(incident, clip)

    def media_path(self, stored: str | None) -> Path | None:
        """A clip path from a record, if it is a file inside the data directory (the API's rule)."""
        if not stored:
            return None
        path = Path(stored).resolve()
        return path if path.is_relative_to(self.data_dir) and path.is_file() else None

    def close(self) -> None:
        """Stop taking jobs (a running one stops at its next frame once ``stopping`` is set)."""
        self._jobs.close()
