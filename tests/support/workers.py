"""Helpers for tests of the stream workers."""

from __future__ import annotations

import time

from monitor.ingest.worker import StreamWorker
from monitor.types import Frame


def collect(worker: StreamWorker, seconds: float) -> list[Frame]:
    """Every frame the worker publishes (polled faster than it samples)."""
    frames: dict[int, Frame] = {}
    worker.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        frame = worker.latest()
        if frame is not None:
            frames.setdefault(frame.seq, frame)
        time.sleep(0.01)
    worker.stop()
    return [frames[k] for k in sorted(frames)]
