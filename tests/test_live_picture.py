"""The live picture's file is named by a digest of the camera's name, never by the name, and the status record
carries the path the web page serves it from. A still picture behind the motion gate is not encoded again every
status round; a changed one, or any picture without the gate, is."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import numpy as np

from monitor.analyze.motion import thumbnail
from monitor.config import CameraConfig
from monitor.ingest.worker import Source, StreamWorker
from monitor.runtime.camera import CameraRuntime
from monitor.runtime.status import StatusReporter, live_picture_path
from monitor.store.incidents import IncidentStore
from monitor.types import Detections, Frame, Observation

NOT_A_JPEG = b"not the picture any more"


class _Store:
    def __init__(self) -> None:
        self.cameras: dict[str, dict[str, Any]] = {}

    def publish_camera_status(self, name: str, status: dict[str, Any], ttl_s: int) -> None:
        self.cameras[name] = status


def _camera(name: str, motion_gate: bool = False) -> CameraRuntime:
    """A camera runtime (its worker never started) that has seen one frame."""
    worker = StreamWorker(name, Source("rtsp://10.0.0.1/x", is_file=False), 2.0, 0.0)
    cam = CameraRuntime(name, CameraConfig(url="rtsp://10.0.0.1/x", motion_gate=motion_gate), worker, worker)
    _see(cam, seq=1, detections=Detections.empty())
    return cam


def _see(cam: CameraRuntime, seq: int, detections: Detections, brightness: int = 0) -> None:
    """What the detection loop leaves behind after a frame (the gate's reference only when the picture changed)."""
    image = np.full((48, 64, 3), brightness, dtype=np.uint8)
    cam.last_frame = Frame(cam.name, seq, float(seq), image)
    cam.last = Observation(cam.name, float(seq), detections)
    if cam.config.motion_gate and (cam.motion_thumb is None or brightness != int(cam.motion_thumb[0, 0])):
        cam.motion_thumb = thumbnail(image)


def _reporter(tmp_path: Path) -> tuple[StatusReporter, _Store]:
    store = _Store()
    return StatusReporter(cast(IncidentStore, store), tmp_path, ttl_s=60), store


def _spoil(path: Path) -> None:
    """Overwrite the live picture: whether a report wrote it again shows in its content."""
    path.write_bytes(NOT_A_JPEG)


def _is_jpeg(path: Path) -> bool:
    return path.read_bytes()[:2] == b"\xff\xd8"


def test_live_picture_file_is_named_by_a_digest_inside_the_live_folder(tmp_path: Path) -> None:
    reporter, store = _reporter(tmp_path)
    names = ['<img src=x onerror="alert(1)">', "../../etc/evil", "门口", "gate"]
    reporter.report([_camera(n) for n in names], None)
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert len(written) == len(names) and all(p.parent == Path("live") for p in written)
    assert all(re.fullmatch(r"[0-9a-f]{24}\.jpg", p.name) for p in written)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live"]  # no folder named after a camera
    for name in names:
        path = live_picture_path(tmp_path, name)
        assert store.cameras[name]["snapshot"] == str(path) and _is_jpeg(path)
    assert live_picture_path(tmp_path, "gate") == live_picture_path(tmp_path, "gate")


def test_a_still_picture_behind_the_motion_gate_is_encoded_once(tmp_path: Path) -> None:
    reporter, store = _reporter(tmp_path)
    cam = _camera("street", motion_gate=True)
    path = live_picture_path(tmp_path, "street")
    reporter.report([cam], None)
    assert _is_jpeg(path)
    _spoil(path)
    _see(cam, seq=2, detections=cam.last.detections if cam.last else Detections.empty())  # gated: reused
    reporter.report([cam], None)
    assert path.read_bytes() == NOT_A_JPEG, "an unchanged picture was encoded again"
    assert store.cameras["street"]["snapshot"] == str(path), "the page still gets the picture"

    _see(cam, seq=3, detections=Detections.empty(), brightness=200)  # the picture moved: new reference, detections
    reporter.report([cam], None)
    assert _is_jpeg(path), "a changed picture must be drawn again"

    path.unlink()  # e.g. removed by hand: the next round writes it again though nothing moved
    reporter.report([cam], None)
    assert _is_jpeg(path) and store.cameras["street"]["snapshot"] == str(path)


def test_new_detections_on_a_still_picture_are_drawn(tmp_path: Path) -> None:
    """The gate's reference alone does not decide: a detection pass with new results redraws the boxes."""
    reporter, _ = _reporter(tmp_path)
    cam = _camera("street", motion_gate=True)
    path = live_picture_path(tmp_path, "street")
    reporter.report([cam], None)
    _spoil(path)
    person = Detections(np.array([[10.0, 10.0, 20.0, 40.0]], dtype=np.float32), np.array([0.9], dtype=np.float32))
    _see(cam, seq=2, detections=person)
    reporter.report([cam], None)
    assert _is_jpeg(path)


def test_without_the_motion_gate_every_round_draws_the_newest_frame(tmp_path: Path) -> None:
    reporter, _ = _reporter(tmp_path)
    cam = _camera("street")
    path = live_picture_path(tmp_path, "street")
    reporter.report([cam], None)
    _spoil(path)
    _see(cam, seq=2, detections=cam.last.detections if cam.last else Detections.empty())
    reporter.report([cam], None)
    assert _is_jpeg(path)
