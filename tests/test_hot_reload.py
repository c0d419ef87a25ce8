"""Hot reload on a running engine with real RTSP cameras: add, change, remove, and an invalid edit."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from detectors import Detector
from monitor.config import load_config
from monitor.engine import Engine
from tests.support.rtsp import RtspCamera
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


def save(path: Path, data: dict[str, Any]) -> None:
    """Write the file as an editor would, with a new modification time."""
    time.sleep(0.05)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_reload_adds_changes_and_removes_cameras_without_pausing_the_untouched_one(
    square_mp4: Path,
    write_config: Callable[..., Path],
    detector: Detector,
    redis_url: str,
    rtsp_cameras: Callable[[dict[str, Path]], RtspCamera],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = rtsp_cameras({"a": square_mp4, "b": square_mp4})
    zone = {"points": [[0, 0.4], [1, 0.4], [1, 1], [0, 1]]}
    cfg: dict[str, Any] = {"redis_url": redis_url, "cameras": {"a": {"url": server.url("a"), "zones": {"z": zone}}}}
    path = write_config(cfg)
    engine = Engine(load_config(path), detector=detector)
    stamps: list[float] = []  # when camera a's detections happened
    sampling = threading.Event()

    def watch_a() -> None:
        seen = 0
        while not sampling.is_set():
            cam = engine.cameras.get("a")
            if cam is not None and cam.detections != seen:
                seen = cam.detections
                stamps.append(time.monotonic())
            time.sleep(0.02)

    runner = threading.Thread(target=engine.run, daemon=True)
    watcher = threading.Thread(target=watch_a, daemon=True)
    runner.start()
    a_before = None
    with caplog.at_level(logging.INFO, logger="monitor.engine"):
        try:
            wait_until(lambda: "a" in engine.cameras and engine.cameras["a"].detections >= 4, 60, "a detecting")
            a_before = engine.cameras["a"]
            watcher.start()
            cfg["cameras"]["b"] = {"url": server.url("b")}  # add a camera
            save(path, cfg)
            wait_until(lambda: "b" in engine.cameras and engine.cameras["b"].detections >= 2, 20, "b detecting")
            cfg["cameras"]["a"]["zones"]["z"] = {"points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}  # change a zone
            save(path, cfg)
            wait_until(lambda: engine.cameras["a"].config.zones["z"].points[1] == (0.5, 0.0), 5, "zone changed")
            del cfg["cameras"]["b"]  # remove a camera
            save(path, cfg)
            wait_until(lambda: "b" not in engine.cameras, 5, "b removed")
            path.write_text(path.read_text().replace("zones:", "zonez:"))  # an invalid edit
            wait_until(lambda: "still running the previous config" in caplog.text, 5, "invalid edit logged")
            time.sleep(2)
        finally:
            sampling.set()
            engine.stop_event.set()
            runner.join(30)
    assert engine.cameras["a"] is a_before, "the untouched camera was never restarted"
    assert "zonez" in caplog.text and "did you mean 'zones'" in caplog.text, "the errors are logged"
    assert engine.loaded.config.cameras["a"].zones["z"].points[1] == (0.5, 0.0), "the running config stays"
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # a restart would pause it for seconds (reopen, first keyframe); 3 intervals leave room for a loaded machine
    assert len(gaps) > 10 and max(gaps) <= 1.5, f"camera a paused for {max(gaps):.2f} s (interval 0.5 s)"
