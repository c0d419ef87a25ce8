"""Pick the inference backend: the fastest one installed that can run here, with the reason logged.

Order for ``auto``: TensorRT (CUDA GPU + tensorrt), OpenVINO (~17 ms per 640 frame on one core
here), ONNX Runtime (~29 ms), torch via Ultralytics (~76 ms). Probing avoids importing torch unless
tensorrt is installed, so a CPU worker stays ~0.5 GB lighter.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from importlib import metadata

from detectors.base import DetectorError
from detectors.config import Backend

log = logging.getLogger(__name__)

_MODULE = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt", "torch": "ultralytics"}
_DIST = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt", "torch": "torch"}


@dataclass(frozen=True, slots=True)
class BackendChoice:
    """The backend to use and why (shown in ``describe()`` and the startup log)."""

    backend: Backend
    reason: str


def _installed(backend: str) -> bool:
    return importlib.util.find_spec(_MODULE[backend]) is not None


def _version(backend: str) -> str:
    try:
        return metadata.version(_DIST[backend])
    except metadata.PackageNotFoundError:
        return "?"


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (imports torch: call only when tensorrt is installed)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def choose_backend(requested: Backend) -> BackendChoice:
    """Resolve ``requested`` ("auto" or a name) to an installed backend; DetectorError if it cannot run."""
    if requested != "auto":
        if not _installed(requested):
            raise DetectorError(f"detector backend {requested!r} is not installed (pip install {_DIST[requested]})")
        if requested == "tensorrt" and not cuda_available():
            raise DetectorError("detector backend 'tensorrt' needs a CUDA GPU, and torch sees none")
        return BackendChoice(requested, f"configured ({_DIST[requested]} {_version(requested)})")
    skipped: list[str] = []
    if not _installed("tensorrt"):
        skipped.append("tensorrt not installed")
    elif not cuda_available():
        skipped.append("no CUDA device for tensorrt")
    else:
        return BackendChoice("tensorrt", f"auto: CUDA + tensorrt {_version('tensorrt')}")
    for name in ("openvino", "onnxruntime"):
        if _installed(name):
            return BackendChoice(name, f"auto: {'; '.join(skipped)}; {name} {_version(name)} is fastest on CPU")
        skipped.append(f"{name} not installed")
    return BackendChoice("torch", f"auto: {'; '.join(skipped)}; torch via Ultralytics")
