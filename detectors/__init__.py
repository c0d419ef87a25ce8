"""Person detectors: build one from a ``DetectorConfig``; everything downstream sees only ``Detections``."""

from __future__ import annotations

import logging
from pathlib import Path

from detectors.base import Detector, DetectorError
from detectors.config import Backend, DetectorConfig, TilingConfig
from detectors.model_fetch import DEFAULT_MODEL_NAME, DEFAULT_MODEL_SHA256, default_model_path, ensure_default_model
from detectors.select import BackendChoice, choose_backend
from detectors.tiling import TiledDetector
from detectors.yolo import UltralyticsDetector, is_remote_model

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MODEL_NAME",
    "DEFAULT_MODEL_SHA256",
    "Backend",
    "BackendChoice",
    "Detector",
    "DetectorConfig",
    "DetectorError",
    "TiledDetector",
    "TilingConfig",
    "UltralyticsDetector",
    "choose_backend",
    "create_detector",
    "default_model_path",
    "ensure_default_model",
    "resolve_model_path",
]


def resolve_model_path(config: DetectorConfig, base_dir: Path | None = None) -> str | Path:
    """Where the configured model lives: the fetched default, a (first) Triton URL, or a path.

    Relative paths are taken against ``base_dir`` (the config file's directory), so a config
    works the same whatever directory the service was started from.
    """
    if config.model is None:
        return ensure_default_model(default_model_path().parent)
    if isinstance(config.model, tuple):
        return config.model[0]
    if is_remote_model(config.model):
        return config.model
    path = Path(config.model).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def create_detector(config: DetectorConfig, base_dir: Path | None = None) -> Detector:
    """Build the detector described by ``config`` (exports if needed, loads and warms up the model).

    A local ``.pt`` source runs on the backend and device ``config.backend`` resolves to (see ``detectors.select``:
    TensorRT or torch on a CUDA GPU, else OpenVINO/ONNX Runtime on the CPU); Triton URLs run on those
    servers (``detectors.triton``); other model files run through Ultralytics. ``config.tiles`` wraps any in tiling.
    """
    detector: Detector
    if config.model is not None and (isinstance(config.model, tuple) or is_remote_model(config.model)):
        from detectors.triton import TritonDetector  # deferred: imports tritonclient

        detector = TritonDetector(config, config.model if isinstance(config.model, tuple) else (config.model,))
    else:
        detector = _create_untiled(config, resolve_model_path(config, base_dir))
    if config.tiles is not None:
        detector = TiledDetector(detector, config.tiles, config.iou)
    return detector


def _create_untiled(config: DetectorConfig, source: str | Path) -> Detector:
    if not Path(source).exists():
        raise DetectorError(f"model file not found: {source}")
    if Path(source).suffix != ".pt":
        if config.backend not in ("auto", "torch"):
            raise DetectorError(f"backend {config.backend!r} needs a .pt source model (it exports it), got {source}")
        return UltralyticsDetector(config, source)
    choice = choose_backend(config.backend, device=config.device, precision=config.precision)
    log.info("detector backend %s (%s)", choice.backend, choice.reason)
    if choice.device is not None and config.device is None:
        config = config.model_copy(update={"device": choice.device})  # e.g. cuda:0 for torch on a CUDA GPU
    if choice.backend == "torch":
        return UltralyticsDetector(config, source)
    from detectors.backends import build_backend  # deferred: imports the runtime (onnxruntime/openvino)

    try:
        return build_backend(config, Path(source), choice)
    except DetectorError:
        if config.backend != "auto":
            raise
        log.exception("backend %s failed; falling back to Ultralytics torch", choice.backend)
        return UltralyticsDetector(config, source)
