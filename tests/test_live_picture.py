"""The live picture's file is named by a digest of the camera's name, never by the name, and the status record
carries the path the web page serves it from."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np

from monitor.ingest.worker import WorkerStatus
from monitor.runtime.camera import CameraRuntime
from monitor.runtime.status import StatusReporter, live_picture_path
from monitor.store.incidents import IncidentStore
from monitor.types import Detections


class _Store:
    def __init__(self) -> None:
        self.cameras: dict[str, dict[str, Any]] = {}

    def publish_camera_status(self, name: str, status: dict[str, Any], ttl_s: int) -> None:
        self.cameras[name] = status


def _camera(name: str) -> CameraRuntime:
    image = np.zeros((48, 64, 3), dtype=np.uint8)
    frame = SimpleNamespace(image=image, size=(64, 48), scale=1.0)
    last = SimpleNamespace(detections=Detections.empty(), zones={})
    worker = SimpleNamespace(
        status=lambda: WorkerStatus(online=True, width=64, height=48),
        source=SimpleNamespace(redacted=lambda: "rtsp://10.0.0.1/x"),
    )
    cam = SimpleNamespace(
        name=name, last=last, last_frame=frame, detect_times=[], dropped=0, worker=worker,
        zone_polygons=lambda size: {},
    )  # fmt: skip
    return cast(CameraRuntime, cam)


def test_live_picture_file_is_named_by_a_digest_inside_the_live_folder(tmp_path: Path) -> None:
    store = _Store()
    reporter = StatusReporter(cast(IncidentStore, store), tmp_path, ttl_s=60)
    names = ['<img src=x onerror="alert(1)">', "../../etc/evil", "门口", "gate"]
    reporter.report([_camera(n) for n in names], None)
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert len(written) == len(names) and all(p.parent == Path("live") for p in written)
    assert all(re.fullmatch(r"[0-9a-f]{24}\.jpg", p.name) for p in written)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live"]  # no folder named after a camera
    for name in names:
        path = live_picture_path(tmp_path, name)
        assert store.cameras[name]["snapshot"] == str(path) and path.read_bytes()[:2] == b"\xff\xd8"
    assert live_picture_path(tmp_path, "gate") == live_picture_path(tmp_path, "gate")
