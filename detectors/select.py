"""Pick the inference backend: the fastest one installed that can run here, with the reason logged.

Order for ``auto``:

1. TensorRT, when torch sees a CUDA device and ``tensorrt`` is installed (fp16 engine, built once);
2. else torch via Ultralytics on ``cuda:0`` (fp16 with ``precision: auto``), when torch sees a CUDA device:
   633 frames/s at batch 32 on an H200 (one core) vs 150 for ONNX Runtime on 12 of its 16 CPU cores
   (bench/RESULTS.md, "GPU path");
3. else the CPU runtimes: OpenVINO (~17 ms per 640 frame on one core here), ONNX Runtime (~29 ms),
   torch via Ultralytics (~76 ms).

The decision is ``select_backend``, a pure function of an ``Available`` record (unit-tested without a
GPU); ``probe`` fills that record in. Probing imports torch only when an NVIDIA (or ROCm) driver is
present, so a CPU worker stays ~0.5 GB lighter.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Literal

from detectors.base import DetectorError
from detectors.config import Backend, Precision

_MODULE = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt", "torch": "ultralytics"}
_DIST = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt", "torch": "torch"}
_CPU_RUNTIMES: tuple[Literal["openvino", "onnxruntime"], ...] = ("openvino", "onnxruntime")
# Device nodes a GPU driver creates: NVIDIA (Linux), WSL's GPU paravirtualisation, AMD ROCm (torch.cuda there too).
_OPENVINO_PRECISIONS = ("bf16", "int8")  # CPU precisions only OpenVINO runs (see detectors.precision)
_GPU_DRIVER_PATHS = ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/dxg", "/dev/kfd")


@dataclass(frozen=True, slots=True)
class BackendChoice:
    """The backend to use, the torch device it implies (None: a CPU runtime decides), and why."""

    backend: Backend
    reason: str
    device: str | None = None


@dataclass(frozen=True, slots=True)
class Available:
    """What this machine offers the detector: the only input of ``select_backend`` besides the config.

    ``installed`` holds the backend names whose package imports ("torch" = ultralytics + torch,
    "tensorrt", "openvino", "onnxruntime"); ``cuda`` names CUDA device 0 as torch sees it (None: no
    usable CUDA device, with ``no_cuda_why`` saying why); ``versions`` (backend -> version) and
    ``cpus`` only go into the reason text.
    """

    installed: frozenset[str] = frozenset()
    cuda: str | None = None
    no_cuda_why: str = "torch sees no CUDA device"
    cpus: int = 1
    versions: Mapping[str, str] = field(default_factory=dict)

    def hardware(self) -> str:
        """One phrase naming the hardware, e.g. "CUDA GPU NVIDIA H200, 16 CPUs"."""
        gpu = f"CUDA GPU {self.cuda}" if self.cuda else f"no CUDA GPU ({self.no_cuda_why})"
        return f"{gpu}, {self.cpus} CPUs"

    def version(self, backend: str) -> str:
        return self.versions.get(backend, "?")


def _installed(backend: str) -> bool:
    return importlib.util.find_spec(_MODULE[backend]) is not None


def _version(backend: str) -> str:
    try:
        return metadata.version(_DIST[backend])
    except metadata.PackageNotFoundError:
        return "?"


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def gpu_driver_present() -> bool:
    """Whether a GPU driver's device nodes exist (cheap; decides whether importing torch is worth it)."""
    return any(Path(p).exists() for p in _GPU_DRIVER_PATHS)


def cuda_device() -> tuple[str | None, str]:
    """(name of CUDA device 0, or None; why not). Imports torch only when a GPU driver is present."""
    if not gpu_driver_present():
        return None, "no GPU driver"
    try:
        import torch
    except ImportError:
        return None, "torch not installed"
    if not torch.cuda.is_available():
        return None, f"torch {torch.__version__} sees no CUDA device"
    return str(torch.cuda.get_device_name(0)), ""


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (imports torch when a GPU driver is present)."""
    return cuda_device()[0] is not None


def probe(*, cuda: bool = True) -> Available:
    """What is installed here; with ``cuda`` also whether torch sees a CUDA device (see ``cuda_device``)."""
    installed = frozenset(b for b in _MODULE if _installed(b))
    if not cuda:
        name, why = None, "not probed"
    elif "torch" not in installed:
        name, why = None, "ultralytics/torch not installed"
    else:
        name, why = cuda_device()
    return Available(installed, name, why or "torch sees no CUDA device", _cpus(), {b: _version(b) for b in installed})


def _is_cpu_device(device: str | None) -> bool:
    return device is not None and device.strip().lower().split(":")[0] in ("cpu", "mps")


def select_backend(
    requested: Backend, available: Available, *, device: str | None = None, precision: Precision = "auto"
) -> BackendChoice:
    """Resolve ``requested`` ("auto" or a name) on ``available``; DetectorError if it cannot run.

    Pure: everything it looks at is in its arguments. ``device`` is the configured torch device: "cpu"
    keeps ``auto`` off the GPU. ``precision: fp16`` needs a CUDA device (torch or TensorRT); ``bf16``/``int8``
    run only on OpenVINO (``auto`` resolves to it).
    """
    if _is_cpu_device(device):
        cuda, hw = None, f"device {device!r} configured, {available.cpus} CPUs"
    else:
        cuda, hw = available.cuda, available.hardware()
    gpu_device = device or "cuda:0"
    if precision in _OPENVINO_PRECISIONS:
        return _openvino_for(precision, requested, available, hw)
    if requested != "auto":
        if requested not in available.installed:
            raise DetectorError(f"detector backend {requested!r} is not installed (pip install {_DIST[requested]})")
        if requested == "tensorrt" and not cuda:
            raise DetectorError(f"detector backend 'tensorrt' needs a CUDA GPU; here: {hw}")
        if precision == "fp16" and (requested in _CPU_RUNTIMES or not cuda):
            raise DetectorError(f"precision 'fp16' needs a CUDA device (torch or tensorrt), not {requested} on {hw}")
        if requested in _CPU_RUNTIMES:
            return BackendChoice(requested, f"configured: {requested} {available.version(requested)} on the CPU")
        on = gpu_device if cuda else None
        where = f"on {on}" if on else "on the CPU"
        reason = f"configured: {_DIST[requested]} {available.version(requested)} {where}; {hw}"
        return BackendChoice(requested, reason, on)
    if cuda and "torch" in available.installed:
        if "tensorrt" in available.installed:
            why = f"CUDA + tensorrt {available.version('tensorrt')}: TensorRT engine on {gpu_device}"
            return BackendChoice("tensorrt", f"auto on {hw}: {why}", gpu_device)
        why = (
            f"tensorrt not installed, so torch {available.version('torch')} via Ultralytics on {gpu_device} "
            "(the GPU beats the CPU runtimes)"
        )
        return BackendChoice("torch", f"auto on {hw}: {why}", gpu_device)
    if precision == "fp16":
        raise DetectorError(f"precision 'fp16' needs a CUDA device (torch or tensorrt); here: {hw}")
    skipped = [f"{'ultralytics not installed' if cuda else 'no CUDA device'}, so neither TensorRT nor CUDA torch"]
    for name in _CPU_RUNTIMES:
        if name in available.installed:
            why = f"{'; '.join(skipped)}; {name} {available.version(name)} is fastest on CPU"
            return BackendChoice(name, f"auto on {hw}: {why}")
        skipped.append(f"{name} not installed")
    return BackendChoice("torch", f"auto on {hw}: {'; '.join(skipped)}; torch via Ultralytics on the CPU", "cpu")


def _openvino_for(precision: Precision, requested: Backend, available: Available, hw: str) -> BackendChoice:
    """bf16 and int8 are OpenVINO CPU precisions: ``auto`` resolves to OpenVINO, any other backend is an error."""
    if requested not in ("auto", "openvino"):
        raise DetectorError(f"precision {precision!r} needs the openvino backend (CPU), not {requested}")
    if "openvino" not in available.installed:
        raise DetectorError(f"precision {precision!r} needs openvino (pip install openvino)")
    how = "configured" if requested == "openvino" else f"auto on {hw}: precision {precision} runs on"
    return BackendChoice("openvino", f"{how} openvino {available.version('openvino')} on the CPU")


def choose_backend(requested: Backend, *, device: str | None = None, precision: Precision = "auto") -> BackendChoice:
    """``select_backend`` on this machine (``probe``); CUDA is probed only when the choice depends on it."""
    on_gpu = requested in ("auto", "torch", "tensorrt") and precision not in _OPENVINO_PRECISIONS
    needs_cuda = on_gpu and not _is_cpu_device(device)
    return select_backend(requested, probe(cuda=needs_cuda), device=device, precision=precision)
