"""Blurred exports of incident clips, made in the background (a minute of CPU per clip, never in a request).

One worker thread: exports are rare, and the cameras' detection must keep its CPU. The detector is
built on first use, from the config's detector settings, so a review-only server loads no model
until somebody exports.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from detectors import Detector, create_detector
from monitor.actions.privacy import export_blurred
from monitor.config import LoadedConfig
from monitor.web.jobs import JobRunner

log = logging.getLogger(__name__)

ExportState = Literal["missing", "running", "ready", "failed"]


class ExportJobs:
    """Starts, tracks and finds the blurred copy of each incident's clip (``data_dir/exports/<id>.mp4``)."""

    def __init__(self, config: LoadedConfig) -> None:
        self.config = config
        self.directory = config.data_dir / "exports"
        self._jobs = JobRunner("export")
        self._detector: Detector | None = None

    def path(self, incident_id: str) -> Path:
        """Where the export of an incident is written."""
        return self.directory / f"{incident_id}.mp4"

    def state(self, incident_id: str) -> tuple[ExportState, str | None]:
        """What exists for this incident, and the error when the last attempt failed."""
        state, error = self._jobs.state(incident_id)
        if state == "running" or state == "failed":
            return state, error
        return ("ready", None) if self.path(incident_id).is_file() else ("missing", None)

    def start(self, incident_id: str, clip: Path) -> ExportState:
        """Queue an export unless one exists or is running."""
        current, _ = self.state(incident_id)
        if current in ("running", "ready"):
            return current
        self._jobs.start(incident_id, lambda _report: self._run(incident_id, clip))
        return "running"

    def _run(self, incident_id: str, clip: Path) -> Path:
        if self._detector is None:
            self._detector = create_detector(self.config.config.detector, self.config.base_dir)
        out = export_blurred(clip, self.path(incident_id), self._detector)
        log.info("exported %s with heads blurred", out.name)
        return out

    def close(self) -> None:
        """Stop taking jobs (a running one finishes)."""
        self._jobs.close()
