"""Exported-model backends (bare ONNX Runtime / OpenVINO) agree with the Ultralytics reference.

Real model, real images: the two photos of the ultralytics wheel and frames of the sample video.
Exports are built once per session into a temporary copy of the model's directory, so the test
also covers a cold cache; every later use must hit that cache.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import threading
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest
import ultralytics

from detectors import Detector, DetectorConfig, choose_backend, create_detector, ensure_default_model
from detectors.export import ExportedModel, ExportSettings, ensure_export
from detectors.native import BATCH_PIXELS, NativeDetector, Runner, batch_limit, split_for_streams
from detectors.postprocess import box_iou
from monitor.types import Detections

ASSETS = Path(ultralytics.__file__).parent / "assets"
BACKENDS = [b for b in ("onnxruntime", "openvino") if importlib.util.find_spec(b) is not None]
Images = dict[str, npt.NDArray[np.uint8]]


@pytest.fixture(scope="session")
def model_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default .pt in a fresh directory: its export cache starts empty and is shared by this session."""
    dest = tmp_path_factory.mktemp("models") / "yolo11n-pose.pt"
    shutil.copyfile(ensure_default_model(Path(__file__).resolve().parent.parent / "models"), dest)
    return dest


@pytest.fixture(scope="session")
def images(square_mp4: Path) -> Images:
    """bus.jpg, zidane.jpg and four frames of the sample video (people 50-110 px tall)."""
    out: Images = {}
    for name in ("bus.jpg", "zidane.jpg"):
        image = cv2.imread(str(ASSETS / name))
        assert image is not None
        out[name] = np.asarray(image, np.uint8)
    with av.open(str(square_mp4)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in (0, 250, 500, 700):
                out[f"square#{i}"] = np.asarray(frame.to_ndarray(format="bgr24"), np.uint8)
            if i >= 700:
                break
    return out


@pytest.fixture(scope="session")
def reference(model_copy: Path, images: Images) -> dict[str, Detections]:
    """Ultralytics .pt (torch) results at the default settings: the reference every backend must match."""
    det = create_detector(DetectorConfig(model=str(model_copy), backend="torch"))
    assert "UltralyticsDetector" in det.describe()
    return {name: det.detect([image])[0] for name, image in images.items()}


@pytest.fixture(scope="session")
def backend_detectors(model_copy: Path) -> dict[str, Detector]:
    """One detector per installed exported-model backend (exports built here, once)."""
    return {b: create_detector(DetectorConfig(model=str(model_copy), backend=b)) for b in BACKENDS}


def _assert_agrees(ref: Detections, got: Detections, label: str) -> None:
    assert len(got) == len(ref), f"{label}: {len(got)} people vs reference {len(ref)}"
    if not len(ref):
        return
    iou = box_iou(ref.xyxy, got.xyxy)
    match = iou.argmax(axis=1)
    assert len(set(match.tolist())) == len(ref), f"{label}: two reference boxes matched one box"
    assert iou.max(axis=1).min() > 0.9, f"{label}: IoU {iou.max(axis=1)}"
    assert ref.keypoints is not None and got.keypoints is not None
    heights = ref.heights()[:, None]
    visible = ref.keypoints[..., 2] > 0.5
    err = np.linalg.norm(ref.keypoints[..., :2] - got.keypoints[match][..., :2], axis=2) / heights
    assert np.all(err[visible] < 0.05), f"{label}: keypoints off by up to {err[visible].max():.3f} body heights"


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_agrees_with_ultralytics(
    backend: str, backend_detectors: dict[str, Detector], images: Images, reference: dict[str, Detections]
) -> None:
    """Same counts, boxes matched at IoU > 0.9 and keypoints within 5% of body height, image by image."""
    det = backend_detectors[backend]
    assert f"backend={backend}" in det.describe()
    for name, image in images.items():
        _assert_agrees(reference[name], det.detect([image])[0], f"{backend} {name}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_batch_equals_one_by_one(backend: str, backend_detectors: dict[str, Detector], images: Images) -> None:
    """Mixed sizes in one call give each image the result it gets alone (batching never changes results)."""
    det = backend_detectors[backend]
    names = sorted(images)
    batched = det.detect([images[n] for n in names])
    for name, got in zip(names, batched, strict=True):
        alone = det.detect([images[name]])[0]
        assert len(got) == len(alone)
        np.testing.assert_allclose(got.xyxy, alone.xyxy, atol=0.5)
    assert det.detect([]) == []


def test_auto_picks_a_cpu_runtime_and_says_why(model_copy: Path, backend_detectors: dict[str, Detector]) -> None:
    """No GPU here: auto resolves to OpenVINO (or ONNX Runtime), and describe() names it and the reason."""
    if not BACKENDS:
        pytest.skip("neither openvino nor onnxruntime is installed")
    choice = choose_backend("auto")
    assert choice.backend == BACKENDS[-1]  # openvino when installed, else onnxruntime
    assert "no CUDA" in choice.reason and "TensorRT" in choice.reason  # why the GPU paths were passed over
    det = create_detector(DetectorConfig(model=str(model_copy)))
    assert f"backend={choice.backend}" in det.describe() and "auto" in det.describe()


def _export(source: Path, fmt: str = "onnx") -> ExportedModel:
    return ensure_export(source, ExportSettings(fmt, dynamic=True))  # type: ignore[arg-type]


def test_export_cache_is_reused(
    model_copy: Path, backend_detectors: dict[str, Detector], caplog: pytest.LogCaptureFixture
) -> None:
    """A second use finds the export: no rebuild, files untouched, nothing logged as exported."""
    if not BACKENDS:
        pytest.skip("neither openvino nor onnxruntime is installed")
    fmt = "openvino" if BACKENDS[-1] == "openvino" else "onnx"
    first = _export(model_copy, fmt)
    mtimes = {p.name: p.stat().st_mtime_ns for p in first.directory.iterdir()}
    with caplog.at_level(logging.INFO, logger="detectors.export"):
        again = _export(model_copy, fmt)
        create_detector(DetectorConfig(model=str(model_copy), imgsz=640))  # another imgsz: same dynamic export
    assert not again.rebuilt and again.path == first.path
    assert {p.name: p.stat().st_mtime_ns for p in again.directory.iterdir()} == mtimes
    assert "exported" not in caplog.text
    assert first.directory.parent == model_copy.with_name("yolo11n-pose.exports")  # cached next to the source


def test_corrupt_or_missing_cache_is_rebuilt(tmp_path: Path, images: Images) -> None:
    """A damaged model file or a lost manifest is detected (sha256 check) and the export rebuilt."""
    source = tmp_path / "people.pt"
    shutil.copyfile(ensure_default_model(Path(__file__).resolve().parent.parent / "models"), source)
    built = _export(source)
    assert built.rebuilt
    data = bytearray(built.path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # same size, garbage weights
    built.path.write_bytes(bytes(data))
    repaired = _export(source)
    assert repaired.rebuilt and repaired.path.read_bytes() != bytes(data)
    (repaired.directory / "manifest.json").unlink()
    assert _export(source).rebuilt
    assert not _export(source).rebuilt
    if "onnxruntime" in BACKENDS:
        det = create_detector(DetectorConfig(model=str(source), backend="onnxruntime"))
        assert len(det.detect([images["zidane.jpg"]])[0]) == 2


def test_concurrent_exports_build_once(tmp_path: Path) -> None:
    """Two callers at once (the lock is per open file, so threads stand in for processes): one exports."""
    source = tmp_path / "people.pt"
    shutil.copyfile(ensure_default_model(Path(__file__).resolve().parent.parent / "models"), source)
    results: list[ExportedModel] = []
    threads = [threading.Thread(target=lambda: results.append(_export(source))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(r.rebuilt for r in results) == [False, True]
    leftovers = [p.name for p in source.with_name("people.exports").iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no temp dirs left behind


class _ConcurrencyProbe:
    """A Runner wrapper that notes how many calls overlapped (the real session does the work)."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self._lock = threading.Lock()
        self._running = 0
        self.most = 0

    @property
    def streams(self) -> int:
        return self._runner.streams

    def __call__(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        with self._lock:
            self._running += 1
            self.most = max(self.most, self._running)
        try:
            return self._runner(batch)
        finally:
            with self._lock:
                self._running -= 1

    def describe(self) -> str:
        return self._runner.describe()


@pytest.mark.parametrize("backend", BACKENDS)
def test_parallel_streams_split_a_batch_without_changing_results(
    backend: str, model_copy: Path, images: Images
) -> None:
    """Two inference streams run chunks of one batch at the same time and give the one-stream results."""
    one = create_detector(DetectorConfig(model=str(model_copy), backend=backend, streams=1))
    two = create_detector(DetectorConfig(model=str(model_copy), backend=backend, streams=2, max_batch=2))
    assert isinstance(two, NativeDetector) and "streams=2x1" in two.describe()
    probe = _ConcurrencyProbe(two._runner)
    two._runner = probe
    batch = [images[n] for n in sorted(images)] * 2
    expected = one.detect(batch)
    got = two.detect(batch)
    assert probe.most == 2
    for want, have in zip(expected, got, strict=True):
        assert len(have) == len(want)
        np.testing.assert_allclose(have.xyxy, want.xyxy, atol=0.5)


def test_split_keeps_every_stream_busy() -> None:
    """Chunks cover the batch in order, respect max_batch, and come in multiples of the stream count."""
    for n, streams, max_batch in [(24, 2, 8), (5, 2, 8), (1, 2, 8), (7, 3, 2), (16, 1, 8), (0, 2, 8)]:
        chunks = split_for_streams(list(range(n)), streams, max_batch)
        assert [i for c in chunks for i in c] == list(range(n))
        assert all(len(c) <= max_batch for c in chunks)
        assert len(chunks) % streams == 0 or len(chunks) == n  # fewer items than streams: one each
        assert max(map(len, chunks), default=0) - min(map(len, chunks), default=0) <= 1
    # 24 images, 2 streams, max_batch 8: four chunks of 6, not 8 + 8 + 8 with one stream idle for the last
    assert [len(c) for c in split_for_streams(list(range(24)), 2, 8)] == [6, 6, 6, 6]


def test_large_inputs_go_in_smaller_batches(model_copy: Path, images: Images) -> None:
    """Memory: at most BATCH_PIXELS of model input per call, whatever max_batch allows (sub-stream sizes keep 8)."""
    assert batch_limit((384, 640), 8) == 8  # a 640x360 sub-stream at imgsz 640
    assert batch_limit((992, 1760), 8) == 2  # the same sub-stream calibrated to 1760
    assert batch_limit((4000, 4000), 8) == 1 and batch_limit((384, 640), 3) == 3
    detector = create_detector(DetectorConfig(model=str(model_copy), backend="openvino", streams=1, imgsz=1280))
    assert isinstance(detector, NativeDetector)
    runner, sizes = detector._runner, []

    class Sizes:
        streams = 1

        def __call__(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            sizes.append((batch.shape[0], batch.shape[2] * batch.shape[3]))
            return runner(batch)

        def describe(self) -> str:
            return runner.describe()

    detector._runner = Sizes()  # type: ignore[assignment]
    frame = images[sorted(images)[0]]
    got = detector.detect([frame] * 8)
    per_call = batch_limit((1, sizes[0][1]), 8)
    assert 1 < per_call < 8 and all(n * pixels <= BATCH_PIXELS for n, pixels in sizes), sizes
    assert [n for n, _ in sizes] == [len(c) for c in split_for_streams(list(range(8)), 1, per_call)]
    assert all(len(d) == len(got[0]) for d in got)  # every image's result stays its own
