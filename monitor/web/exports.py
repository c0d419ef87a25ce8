"""Blurred exports of incident clips, made in the background (a minute of CPU per clip, never in a request).

One worker thread: exports are rare, and the cameras' detection must keep its CPU. The detector is
built on first use, from the config's detector settings, so a review-only server loads no model
until somebody exports.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from detectors import Detector, create_detector
from monitor.actions.privacy import export_blurred
from monitor.config import LoadedConfig
from monitor.redact import scrub

log = logging.getLogger(__name__)

ExportState = Literal["missing", "running", "ready", "failed"]


class ExportJobs:
    """Starts, tracks and finds the blurred copy of each incident's clip (``data_dir/exports/<id>.mp4``)."""

    def __init__(self, config: LoadedConfig) -> None:
        self.config = config
        self.directory = config.data_dir / "exports"
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export")
        self._jobs: dict[str, Future[Path]] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._detector: Detector | None = None

    def path(self, incident_id: str) -> Path:
        """Where the export of an incident is written."""
        return self.directory / f"{incident_id}.mp4"

    def state(self, incident_id: str) -> tuple[ExportState, str | None]:
        """What exists for this incident, and the error when the last attempt failed."""
        with self._lock:
            job = self._jobs.get(incident_id)
            if job is not None and not job.done():
                return "running", None
            if incident_id in self._errors:
                return "failed", self._errors[incident_id]
        return ("ready", None) if self.path(incident_id).is_file() else ("missing", None)

    def start(self, incident_id: str, clip: Path) -> ExportState:
        """Queue an export unless one exists or is running."""
        current, _ = self.state(incident_id)
        if current in ("running", "ready"):
            return current
        with self._lock:
            self._errors.pop(incident_id, None)
            self._jobs[incident_id] = self._pool.submit(self._run, incident_id, clip)
        return "running"

    def _run(self, incident_id: str, clip: Path) -> Path:
        try:
            if self._detector is None:
                self._detector = create_detector(self.config.config.detector, self.config.base_dir)
            out = export_blurred(clip, self.path(incident_id), self._detector)
            log.info("exported %s with heads blurred", out.name)
            return out
        except Exception as exc:  # reported to the person who asked, the server goes on
            with self._lock:
                self._errors[incident_id] = scrub(f"{type(exc).__name__}: {exc}")
            log.error("export of incident %s failed: %s", incident_id, self._errors[incident_id])
            raise

    def close(self) -> None:
        """Stop taking jobs (a running one finishes)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
