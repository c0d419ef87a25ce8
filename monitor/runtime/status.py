"""Live status: a console line per camera, speaker health changes, and both in Redis (with a live snapshot).

Runs on its own thread: the JPEG of the live picture and the Redis writes never touch the detection loop. A
low disk stops the live picture (``media_problem``); a Redis error is counted and the next round tries again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import redis

from monitor.actions.snapshot import annotate, write_jpeg
from monitor.ingest.worker import WorkerStatus
from monitor.runtime.camera import CameraRuntime
from monitor.store.incidents import IncidentStore
from monitor.types import Detections, Frame
from speakers.health import HealthMonitor

log = logging.getLogger("monitor.engine")

STORE_RETRY_S = 5.0


def live_picture_path(data_dir: Path, camera: str) -> Path:
    """Where a camera's live picture is written: named by a digest of the camera's name, never by the name itself
    (a name is text from the config; the web page finds the file through the status record, not by name)."""
    digest = hashlib.sha256(camera.encode("utf-8")).hexdigest()[:24]
    return data_dir / "live" / f"{digest}.jpg"


class StatusReporter:
    """Publishes what the engine sees; entries expire after ``ttl_s`` so a dead engine shows as no data."""

    def __init__(
        self,
        store: IncidentStore,
        data_dir: Path,
        ttl_s: int,
        media_problem: Callable[[], str | None] = lambda: None,
        on_store_error: Callable[[Exception], None] | None = None,
        node: str | None = None,
    ) -> None:
        self.store = store
        self.node = node  # clustered: the node running the cameras, shown on the page
        self.data_dir = data_dir
        self.ttl_s = ttl_s
        self.media_problem = media_problem
        self.on_store_error = on_store_error
        self._speaker_problems: dict[str, tuple[str, str | None]] = {}  # speaker -> (state, problem) logged
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store_down_until = 0.0
        self._pictures: dict[str, tuple[object, ...]] = {}  # camera -> what its live picture file was drawn from

    def start(
        self,
        interval_s: float,
        cameras: Callable[[], Iterable[CameraRuntime]],
        speaker_health: Callable[[], HealthMonitor | None],
    ) -> None:
        """Report every ``interval_s`` on a thread of its own until ``stop``."""

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.report(cameras(), speaker_health())
                except Exception:  # status is best effort: never let it end the reporting
                    log.exception("status report failed")

        self._thread = threading.Thread(target=loop, name="status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reporting."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _store_error(self, what: str, exc: Exception) -> None:
        log.error("could not publish status of %s: %s (retrying in %.0f s)", what, exc, STORE_RETRY_S)
        self._store_down_until = time.monotonic() + STORE_RETRY_S  # a frozen Redis costs one timeout, not one a line
        if self.on_store_error is not None:
            self.on_store_error(exc)

    def _store_usable(self) -> bool:
        return time.monotonic() >= self._store_down_until

    def report(self, cameras: Iterable[CameraRuntime], speaker_health: HealthMonitor | None) -> None:
        """One console line per camera, and the same figures in Redis for other machines."""
        self._report_speakers(speaker_health)
        for cam in cameras:
            st = cam.worker.status()
            times = cam.detect_times
            det_fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) >= 2 and times[-1] > times[0] else 0.0
            people = len(cam.last.detections) if cam.last else 0
            zones = " ".join(f"{z}={c.count}" for z, c in cam.last.zones.items()) if cam.last else ""
            state = "online" if st.online else f"OFFLINE ({st.last_error})"
            log.info(
                "%s: %d people %s| in %.1f fps, detect %.1f fps, dropped %d | %s",
                cam.name,
                people,
                f"[{zones}] " if zones else "",
                st.input_fps,
                det_fps,
                cam.dropped,
                state,
            )
            self._publish_status(cam, st, det_fps, people)

    def _report_speakers(self, speaker_health: HealthMonitor | None) -> None:
        """Log speaker health when it changes, and keep it in Redis for the web page."""
        if speaker_health is None:
            return
        for name, health in speaker_health.status().items():
            if health is None:
                continue
            text = health.problem or health.unverifiable
            if self._speaker_problems.get(name) != (health.state, text):
                if health.state == "failed":
                    log.warning("speaker %s: %s", name, text)
                else:
                    log.info("speaker %s: %s", name, "healthy" if health.ok else f"unverifiable: {text}")
                self._speaker_problems[name] = (health.state, text)
            status: dict[str, str | int | float] = {
                "ok": int(health.ok),
                "state": health.state,
                "problem": text or "",
                "checked_ts": health.checked_at,
            }
            if not self._store_usable():
                continue
            try:
                self.store.publish_speaker_status(name, status, ttl_s=self.ttl_s)
            except redis.RedisError as exc:
                self._store_error(f"speaker {name}", exc)

    def _live_picture(self, cam: CameraRuntime, detections: Detections, frame: Frame) -> str:
        """Path of the camera's annotated live picture, encoded again only when the picture may have changed.

        With the motion gate on, an unchanged motion reference (the same thumbnail object), the same detections
        and the same zones mean the picture in the file is still what the camera shows: a still scene costs no
        JPEG per status round. Without the gate every new frame is drawn, as before.
        """
        path = live_picture_path(self.data_dir, cam.name)
        polygons = cam.zone_polygons(frame.size)
        drawn_from = (cam.motion_thumb, detections, polygons)
        previous = self._pictures.get(cam.name)
        if (
            cam.motion_thumb is not None
            and previous is not None
            and all(a is b for a, b in zip(previous, drawn_from, strict=True))
            and path.is_file()
        ):
            return str(path)
        image = annotate(frame.image, detections, polygons, scale=frame.scale)
        try:
            written = str(write_jpeg(path, image, quality=75))
        except OSError as exc:
            log.error("live picture of %s not written: %s", cam.name, exc)
            self._pictures.pop(cam.name, None)
            return ""
        self._pictures[cam.name] = drawn_from
        return written

    def _publish_status(self, cam: CameraRuntime, st: WorkerStatus, det_fps: float, people: int) -> None:
        """Camera status and a fresh annotated live snapshot, for the web page and other machines."""
        snapshot = ""
        last, frame = cam.last, cam.last_frame  # the loop may replace both meanwhile: read each once
        if last is not None and frame is not None and self.media_problem() is None:
            snapshot = self._live_picture(cam, last.detections, frame)
        else:
            self._pictures.pop(cam.name, None)
        zones = {z: c.count for z, c in last.zones.items()} if last else {}
        status: dict[str, str | int | float] = {
            "online": int(st.online),
            "people": people,
            "zones": json.dumps(zones),
            "input_fps": st.input_fps,
            "detect_fps": round(det_fps, 2),
            "dropped": cam.dropped,
            "reconnects": st.reconnects,
            "last_frame_ts": st.last_frame_ts or 0,
            "last_error": st.last_error or "",
            "decoder": st.decoder,
            "width": st.width or 0,
            "height": st.height or 0,
            "snapshot": snapshot,
            "url": cam.worker.source.redacted(),
            "updated_ts": time.time(),
        }
        if self.node is not None:
            status["node"] = self.node
        if cam.calibration is not None:  # the camera page shows the setting it chose and why
            status["calibration"] = json.dumps(cam.calibration.to_json())
        if not self._store_usable():
            return
        try:
            self.store.publish_camera_status(cam.name, status, ttl_s=self.ttl_s)
        except redis.RedisError as exc:
            self._store_error(cam.name, exc)
