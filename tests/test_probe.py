"""`monitor probe` against a real RTSP server on loopback, and the config's JSON Schema."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.rtsp import RtspCamera


@pytest.mark.slow
def test_probe_reports_codec_size_fps_and_keyframe_interval(
    square_mp4: Path, rtsp_cameras: Callable[[dict[str, Path]], RtspCamera]
) -> None:
    server = rtsp_cameras({"cam": square_mp4})  # H.264 768x576, 10 fps, a keyframe every 20 frames
    out = subprocess.run(
        [sys.executable, "-m", "monitor", "probe", server.url("cam"), "--seconds", "5", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    result = json.loads(out)
    assert (result["codec"], result["width"], result["height"]) == ("h264", 768, 576)
    assert result["fps"] == pytest.approx(10, abs=0.5)
    assert result["keyframe_interval_s"] == pytest.approx(2.0, abs=0.15)
    assert result["has_audio"] is False
    assert result["sampling"] == "all" and "0.5 s or less" in result["advice"]


def test_probe_names_an_unreachable_url_without_its_password() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "probe", "rtsp://admin:s3cret@127.0.0.1:9/x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "rtsp://***@127.0.0.1:9/x" in proc.stderr and "s3cret" not in proc.stderr


def test_json_schema_documents_every_section() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "monitor", "config", "schema"], capture_output=True, text=True, check=True
    ).stdout
    schema = json.loads(out)
    assert {"cameras", "speakers", "rules", "detector", "web", "notify"} <= set(schema["properties"])
    camera = schema["$defs"]["CameraConfig"]
    assert camera["additionalProperties"] is False
    assert all("description" in field for field in camera["properties"].values())


def test_camera_errors_never_carry_the_password() -> None:
    import time

    from monitor.ingest.worker import Source, StreamWorker

    worker = StreamWorker("gate", Source("rtsp://admin:s3cret@127.0.0.1:9/x", False, open_timeout_s=1), 2.0, 1.0)
    worker.start()
    deadline = time.monotonic() + 10
    while worker.status().last_error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.stop()
    error = worker.status().last_error or ""
    assert "Connection refused" in error and "s3cret" not in error and "***@127.0.0.1" in error
