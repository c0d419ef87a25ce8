"""Shared fixtures: the sample media, real servers (RTSP, PulseAudio), config files for tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from detectors import Detector, DetectorConfig, create_detector

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


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[dict[str, object]], Path]:
    """Write a streams.yaml into a temporary directory and return its path."""

    def write(data: dict[str, object], name: str = "streams.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path

    return write
