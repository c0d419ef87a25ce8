"""Person detectors: build one from a ``DetectorConfig``; everything downstream sees only ``Detections``."""

from __future__ import annotations

from pathlib import Path

from detectors.base import Detector, DetectorError
from detectors.config import DetectorConfig
from detectors.model_fetch import DEFAULT_MODEL_NAME, DEFAULT_MODEL_SHA256, default_model_path, ensure_default_model
from detectors.yolo import UltralyticsDetector, is_remote_model

__all__ = [
    "DEFAULT_MODEL_NAME",
    "DEFAULT_MODEL_SHA256",
    "Detector",
    "DetectorConfig",
    "DetectorError",
    "UltralyticsDetector",
    "create_detector",
    "default_model_path",
    "ensure_default_model",
    "resolve_model_path",
]


def resolve_model_path(config: DetectorConfig, base_dir: Path | None = None) -> str | Path:
    """Where the configured model lives: the fetched default, a Triton URL, or a path.

    Relative paths are taken against ``base_dir`` (the config file's directory), so a config
    works the same whatever directory the service was started from.
    """
    if config.model is None:
        return ensure_default_model(default_model_path().parent)
    if is_remote_model(config.model):
        return config.model
    path = Path(config.model).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def create_detector(config: DetectorConfig, base_dir: Path | None = None) -> Detector:
    """Build the detector described by ``config`` (loads and warms up the model)."""
    return UltralyticsDetector(config, resolve_model_path(config, base_dir))
