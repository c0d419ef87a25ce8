"""Shared fixtures: the sample media, real servers (RTSP, PulseAudio), config files for tests."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from detectors import Detector, DetectorConfig, create_detector
from tests.support.media import LIVE_FPS, LIVE_GOP

pytest_plugins = [
    "tests.support.browser",
    "tests.support.cluster",
    "tests.support.pulse",
    "tests.support.rtsp",
    "tests.support.redis_server",
    "tests.support.web",
]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root."""
    return ROOT


@pytest.fixture(scope="session")
def detector() -> Detector:
    """The real default detector (offline yolo11n-pose), loaded once per test session."""
    return create_detector(DetectorConfig())


@pytest.fixture(scope="session")
def square_mp4() -> Path:
    """The committed sample video (pedestrians, 768x576, 10 fps, H.264, GOP 2 s)."""
    return ROOT / "sample_videos" / "square.mp4"


@pytest.fixture(scope="session")
def live_mp4(tmp_path_factory: pytest.TempPathFactory, square_mp4: Path) -> Path:
    """12 s of the sample video as a camera sends it: H.264 main profile, 15 fps, GOP 1 s, no B-frames."""
    ffmpeg = shutil.which("ffmpeg") or pytest.skip("apt-get install ffmpeg")
    out = tmp_path_factory.mktemp("live") / "cam15.mp4"
    subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-ss", "20", "-t", "12", "-i", str(square_mp4), "-an",
                    "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-pix_fmt", "yuv420p",
                    "-r", str(LIVE_FPS), "-g", str(LIVE_GOP), "-keyint_min", str(LIVE_GOP), "-sc_threshold", "0",
                    "-bf", "0", str(out)], check=True)  # fmt: skip
    return out


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[dict[str, object]], Path]:
    """Write a streams.yaml into a temporary directory and return its path."""

    def write(data: dict[str, object], name: str = "streams.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path

    return write
