"""Live status: a console line per camera, speaker health changes, and both in Redis (with a live snapshot)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path

import redis

from monitor.actions.snapshot import annotate, write_jpeg
from monitor.camera import CameraRuntime
from monitor.ingest.worker import WorkerStatus
from monitor.store.incidents import IncidentStore
from speakers.health import HealthMonitor

log = logging.getLogger("monitor.engine")


class StatusReporter:
    """Publishes what the engine sees; entries expire after ``ttl_s`` so a dead engine shows as no data."""

    def __init__(self, store: IncidentStore, data_dir: Path, ttl_s: int) -> None:
        self.store = store
        self.data_dir = data_dir
        self.ttl_s = ttl_s
        self._speaker_problems: dict[str, str | None] = {}

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
            if self._speaker_problems.get(name, "unset") != health.problem:
                if health.ok:
                    log.info("speaker %s: healthy", name)
                else:
                    log.warning("speaker %s: %s", name, health.problem)
                self._speaker_problems[name] = health.problem
            status: dict[str, str | int | float] = {
                "ok": int(health.ok),
                "problem": health.problem or "",
                "checked_ts": health.checked_at,
            }
            try:
                self.store.publish_speaker_status(name, status, ttl_s=self.ttl_s)
            except redis.RedisError as exc:
                log.error("could not publish status of speaker %s: %s", name, exc)

    def _publish_status(self, cam: CameraRuntime, st: WorkerStatus, det_fps: float, people: int) -> None:
        """Camera status and a fresh annotated live snapshot, for the web page and other machines."""
        snapshot = ""
        if cam.last is not None and cam.last_frame is not None:
            polygons = cam.zone_polygons(cam.last_frame.size)
            image = annotate(cam.last_frame.image, cam.last.detections, polygons, scale=cam.last_frame.scale)
            snapshot = str(write_jpeg(self.data_dir / "live" / f"{cam.name}.jpg", image, quality=75))
        zones = {z: c.count for z, c in cam.last.zones.items()} if cam.last else {}
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
            "width": st.width or 0,
            "height": st.height or 0,
            "snapshot": snapshot,
            "url": cam.worker.source.redacted(),
            "updated_ts": time.time(),
        }
        try:
            self.store.publish_camera_status(cam.name, status, ttl_s=self.ttl_s)
        except redis.RedisError as exc:
            log.error("could not publish status of %s: %s", cam.name, exc)
