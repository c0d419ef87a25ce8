"""Backend selection as a pure function of what a machine offers, so the GPU rules are tested without a GPU.

The table covers a CPU box, a CUDA box without tensorrt (the H200 of bench/RESULTS.md, "GPU path", where
``auto`` used to pick ONNX Runtime on the CPU at 150 frames/s against 565 for torch fp16 on the GPU), a
CUDA box with tensorrt, and explicit backends. The precision tests load the real default model on the CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import detectors
from detectors import DetectorConfig, DetectorError, ensure_default_model
from detectors.config import Backend, Precision
from detectors.select import Available, choose_backend, select_backend
from detectors.yolo import UltralyticsDetector, use_half

ALL = frozenset({"torch", "tensorrt", "openvino", "onnxruntime"})
VERSIONS = {"torch": "2.11.0", "tensorrt": "10.13", "openvino": "2025.3", "onnxruntime": "1.30.0"}
H200 = "NVIDIA H200"


def box(*installed: str, cuda: str | None = None) -> Available:
    return Available(frozenset(installed), cuda, "torch sees no CUDA device", 16, VERSIONS)


CPU_ONLY = box("torch", "openvino", "onnxruntime")
CPU_ORT = box("torch", "onnxruntime")
CUDA_NO_TRT = box("torch", "onnxruntime", cuda=H200)
CUDA_TRT = box(*ALL, cuda=H200)

# (case, available, requested, configured device, precision) -> (backend, torch device, words in the reason)
CASES: list[tuple[str, Available, Backend, str | None, Precision, Backend, str | None, tuple[str, ...]]] = [
    ("no GPU: openvino first", CPU_ONLY, "auto", None, "auto", "openvino", None, ("no CUDA GPU", "openvino 2025.3")),
    ("no GPU, no openvino", CPU_ORT, "auto", None, "auto", "onnxruntime", None, ("openvino not installed",)),
    ("no GPU, torch alone", box("torch"), "auto", None, "auto", "torch", "cpu", ("onnxruntime not installed",)),
    ("no GPU, fp32 forced", CPU_ONLY, "auto", None, "fp32", "openvino", None, ("fastest on CPU",)),
    ("CUDA, no tensorrt", CUDA_NO_TRT, "auto", None, "auto", "torch", "cuda:0", (H200, "tensorrt not installed")),
    ("CUDA, no tensorrt, cuda:1", CUDA_NO_TRT, "auto", "cuda:1", "auto", "torch", "cuda:1", ("on cuda:1",)),
    ("CUDA, no tensorrt, fp16", CUDA_NO_TRT, "auto", None, "fp16", "torch", "cuda:0", (H200,)),
    ("CUDA + tensorrt", CUDA_TRT, "auto", None, "auto", "tensorrt", "cuda:0", (H200, "tensorrt 10.13")),
    ("CUDA + tensorrt, device cpu", CUDA_TRT, "auto", "cpu", "auto", "openvino", None, ("device 'cpu' configured",)),
    ("tensorrt without ultralytics", box("tensorrt", "onnxruntime", cuda=H200), "auto", None, "auto",
     "onnxruntime", None, ("ultralytics not installed",)),
    ("explicit onnxruntime on CUDA", CUDA_TRT, "onnxruntime", None, "auto", "onnxruntime", None, ("configured",)),
    ("explicit openvino", CPU_ONLY, "openvino", None, "auto", "openvino", None, ("configured", "openvino 2025.3")),
    ("explicit torch on CUDA", CUDA_TRT, "torch", None, "auto", "torch", "cuda:0", ("configured", H200)),
    ("explicit torch on CPU", CPU_ONLY, "torch", None, "auto", "torch", None, ("configured", "on the CPU")),
    ("explicit torch, device cpu", CUDA_NO_TRT, "torch", "cpu", "auto", "torch", None, ("device 'cpu'",)),
    ("explicit tensorrt", CUDA_TRT, "tensorrt", None, "fp32", "tensorrt", "cuda:0", ("configured", "tensorrt")),
]  # fmt: skip


@pytest.mark.parametrize(("case", "available", "requested", "device", "precision", "backend", "on", "words"), CASES)
def test_selection_table(
    case: str,
    available: Available,
    requested: Backend,
    device: str | None,
    precision: Precision,
    backend: Backend,
    on: str | None,
    words: tuple[str, ...],
) -> None:
    choice = select_backend(requested, available, device=device, precision=precision)
    assert (choice.backend, choice.device) == (backend, on), case
    for word in words:
        assert word in choice.reason, f"{case}: {word!r} not in {choice.reason!r}"
    if requested == "auto":  # the reason names the hardware it looked at
        assert "CPUs" in choice.reason, choice.reason


# (case, available, requested, configured device, precision) -> words in the DetectorError
ERRORS: list[tuple[str, Available, Backend, str | None, Precision, str]] = [
    ("tensorrt not installed", CUDA_NO_TRT, "tensorrt", None, "auto", "not installed"),
    ("tensorrt without CUDA", box("torch", "tensorrt"), "tensorrt", None, "auto", "needs a CUDA GPU"),
    ("tensorrt, device cpu", CUDA_TRT, "tensorrt", "cpu", "auto", "needs a CUDA GPU"),
    ("openvino missing", CUDA_NO_TRT, "openvino", None, "auto", "pip install openvino"),
    ("fp16 on a CPU box", CPU_ONLY, "auto", None, "fp16", "precision 'fp16' needs a CUDA device"),
    ("fp16 on a CPU runtime", CUDA_TRT, "onnxruntime", None, "fp16", "precision 'fp16'"),
    ("fp16, torch on CPU", CPU_ONLY, "torch", None, "fp16", "precision 'fp16'"),
]


@pytest.mark.parametrize(("case", "available", "requested", "device", "precision", "message"), ERRORS)
def test_selection_refuses_what_cannot_run(
    case: str, available: Available, requested: Backend, device: str | None, precision: Precision, message: str
) -> None:
    with pytest.raises(DetectorError, match=message):
        select_backend(requested, available, device=device, precision=precision)


def test_this_machine_is_probed_without_cuda_for_cpu_runtimes(monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit CPU runtime never asks torch about CUDA (no torch import for an OpenVINO worker)."""
    import detectors.select as select

    def no_probe() -> tuple[str | None, str]:
        raise AssertionError("CUDA probed for a CPU runtime")

    monkeypatch.setattr(select, "cuda_device", no_probe)
    for backend in ("openvino", "onnxruntime"):
        if backend in select.probe(cuda=False).installed:
            assert choose_backend(backend).device is None
    assert choose_backend("auto", device="cpu").device in (None, "cpu")


def test_auto_on_cuda_builds_torch_on_the_gpu(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """create_detector hands the GPU device of an auto choice to the Ultralytics detector, and logs why."""
    built: list[DetectorConfig] = []

    class Recorder:
        def __init__(self, config: DetectorConfig, source: Any) -> None:
            built.append(config)

    monkeypatch.setattr(detectors, "choose_backend", lambda *a, **k: select_backend("auto", CUDA_NO_TRT))
    monkeypatch.setattr(detectors, "UltralyticsDetector", Recorder)
    model = ensure_default_model(Path(__file__).resolve().parent.parent / "models")
    with caplog.at_level(logging.INFO, logger="detectors"):
        detectors.create_detector(DetectorConfig(model=str(model)))
        detectors.create_detector(DetectorConfig(model=str(model), device="cuda:1"))
    assert [c.device for c in built] == ["cuda:0", "cuda:1"]  # a configured device is kept
    assert f"detector backend torch (auto on CUDA GPU {H200}, 16 CPUs: tensorrt not installed" in caplog.text


@pytest.mark.parametrize(
    ("precision", "cuda", "torch_model", "half"),
    [
        ("auto", True, True, True),  # .pt on CUDA: fp16
        ("auto", False, True, False),  # CPU: fp32
        ("auto", True, False, False),  # an exported file keeps its own precision
        ("fp32", True, True, False),
        ("fp16", True, False, True),
    ],
)
def test_precision_rule(precision: Precision, cuda: bool, torch_model: bool, half: bool) -> None:
    assert use_half(DetectorConfig(precision=precision), cuda, torch_model) is half


def test_fp16_without_cuda_is_refused() -> None:
    with pytest.raises(DetectorError, match="needs a CUDA device"):
        use_half(DetectorConfig(precision="fp16", device="cpu"), False, True)


def test_cpu_torch_detector_runs_fp32() -> None:
    """On the CPU the project's torch detector stays fp32 and says so; fp16 is refused at startup."""
    model = ensure_default_model(Path(__file__).resolve().parent.parent / "models")
    det = UltralyticsDetector(DetectorConfig(imgsz=320, device="cpu", backend="torch"), model)
    assert "precision=fp32" in det.describe() and "device=cpu" in det.describe()
    with pytest.raises(DetectorError, match="precision 'fp16'"):
        UltralyticsDetector(DetectorConfig(imgsz=320, device="cpu", precision="fp16"), model)
