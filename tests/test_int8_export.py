"""Real INT8 export: NNCF quantizes the default model's OpenVINO IR, the gate stores its numbers, the cache is reused,
and ``create_detector`` runs the INT8 model (or says why not) with people counts close to f32.

Small on purpose (imgsz 320, 16 calibration frames of the sample video): the point is the mechanics on the real
model; bench/precision.py measures accuracy and speed at the real sizes. The gate frames are the two photos of the
ultralytics wheel (large people, so the f32/INT8 comparison has something to compare) and two sample-video frames.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import ultralytics

from detectors import DetectorConfig, create_detector, ensure_default_model
from detectors.export import ExportSettings, ensure_export
from detectors.int8 import GATE, GateSettings, ensure_int8, find_int8, sample_frames
from detectors.int8_gate import matches
from detectors.precision import choose_cpu_precision, read_cpu_info
from tests.support.filesystems import fill, small_tmpfs

pytestmark = pytest.mark.slow

ASSETS = Path(ultralytics.__file__).parent / "assets"
IMGSZ = 320


@pytest.fixture(scope="module")
def model_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default .pt in a fresh directory, so the export cache starts empty (and no other test sees it)."""
    dest = tmp_path_factory.mktemp("int8") / "yolo11n-pose.pt"
    shutil.copyfile(ensure_default_model(Path(__file__).resolve().parent.parent / "models"), dest)
    return dest


def _photos() -> list[np.ndarray]:
    out = []
    for name in ("bus.jpg", "zidane.jpg"):
        image = cv2.imread(str(ASSETS / name))
        assert image is not None
        out.append(np.asarray(image, np.uint8))
    return out


def test_int8_export_is_gated_cached_and_used(model_copy: Path, square_mp4: Path) -> None:
    video = sample_frames([str(square_mp4)], 18)
    calibration, gate_frames = video[:16], [*_photos(), *video[16:]]
    built = ensure_int8(model_copy, IMGSZ, calibration, gate_frames, None, GateSettings())
    assert built.rebuilt and built.path.is_file() and built.path.with_suffix(".bin").is_file()
    assert built.directory.parent == model_copy.with_name("yolo11n-pose.exports")
    assert built.directory.name.startswith(f"openvino-int8-{IMGSZ}-cal")
    gate = json.loads((built.directory / GATE).read_text())
    assert gate["frames"] == 4 and gate["reference"] == "f32 agreement"
    assert gate["f32"] == {"mae": 0.0, "recall": 1.0}  # f32 is its own reference
    assert gate["int8"]["mae"] >= 0.0 and 0.0 <= gate["int8"]["recall"] <= 1.0
    assert gate["passed"] is True and built.verdict.passed  # INT8 keeps these large people
    assert gate["summary"] == built.verdict.summary and "MAE" in gate["summary"]

    again = ensure_int8(model_copy, IMGSZ, calibration, gate_frames, None, GateSettings())
    assert not again.rebuilt and again.directory == built.directory
    found = find_int8(model_copy, IMGSZ)
    assert found is not None and found.directory == built.directory and found.verdict == built.verdict
    assert find_int8(model_copy, IMGSZ + 32) is None  # calibrated per size

    base = {"model": str(model_copy), "imgsz": IMGSZ, "threads": 1, "streams": 1}
    f32 = create_detector(DetectorConfig.model_validate({**base, "precision": "fp32"}))
    int8 = create_detector(DetectorConfig.model_validate({**base, "precision": "int8"}))
    assert "precision f32: configured fp32" in f32.describe()
    assert str(built.path) in int8.describe() and "precision int8" in int8.describe()
    for image in _photos():
        (a,), (b,) = f32.detect([image]), int8.detect([image])
        assert len(a) >= 2  # bus.jpg and zidane.jpg show several large people
        assert abs(len(a) - len(b)) <= 1 and matches(b.xyxy, a.xyxy) >= len(a) - 1

    auto = create_detector(DetectorConfig.model_validate({**base, "precision": "auto"}))
    want, why = choose_cpu_precision(read_cpu_info().flags, "auto", built.verdict)
    assert f"precision {want}: {why}" in auto.describe()


def test_a_onednn_isa_cap_is_the_cpu_precision_auto_chooses_for(model_copy: Path) -> None:
    """Under ``ONEDNN_MAX_CPU_ISA`` the kernels lose the instructions above the cap, but OpenVINO still picks bf16
    by its own default (then 4x slower, on f32 kernels): ``precision: auto`` must follow the cap. Real OpenVINO in
    a process with the cap set; on this CPU uncapped it would run bf16 (or INT8), capped at VNNI it runs f32."""
    import os
    import subprocess
    import sys

    size = IMGSZ + 64  # no INT8 model at this size: auto picks between bf16 and f32
    script = (
        "import logging; from detectors import DetectorConfig, create_detector; logging.basicConfig(level='INFO'); "
        f"d = create_detector(DetectorConfig(model={str(model_copy)!r}, imgsz={size}, threads=1, streams=1)); "
        "print(d.describe())"
    )
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}
    capped = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert capped.returncode == 0, capped.stderr
    assert "precision f32: CPU has none of avx512_bf16, amx_bf16" in capped.stdout, capped.stdout
    assert "precision=f32" in capped.stdout  # the hint OpenVINO is given (its own default would be bf16)
    assert "capped at AVX512_CORE_VNNI by ONEDNN_MAX_CPU_ISA" in capped.stderr  # the startup log line
    if "avx512_bf16" in read_cpu_info(environ={}).flags:  # this EPYC: uncapped, the same call runs bf16
        env.pop("ONEDNN_MAX_CPU_ISA")
        plain = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
        assert plain.returncode == 0 and "precision=bf16" in plain.stdout, plain.stdout + plain.stderr


def test_a_refused_int8_model_is_not_used(model_copy: Path, square_mp4: Path) -> None:
    """A gate no model can pass (MAE must drop by 1) refuses INT8: the detector falls back and says so."""
    video = sample_frames([str(square_mp4)], 10)
    strict = GateSettings(margin_mae=-1.0)
    refused = ensure_int8(model_copy, IMGSZ, video[:8], [*_photos(), *video[8:]], None, strict)
    assert not refused.verdict.passed
    assert json.loads((refused.directory / GATE).read_text())["passed"] is False
    newest = find_int8(model_copy, IMGSZ)
    assert newest is not None and newest.directory == refused.directory  # the newest decision is the one that counts
    config = DetectorConfig(model=str(model_copy), imgsz=IMGSZ, precision="int8", threads=1, streams=1)
    detector = create_detector(config)
    assert "failed its accuracy gate" in detector.describe() and str(refused.path) not in detector.describe()


def test_monitor_export_int8_builds_for_the_configured_cameras(tmp_path: Path, square_mp4: Path) -> None:
    """`monitor export --int8` quantizes the configured model on the cameras' own frames and reports the gate;
    a second run finds it cached."""
    import subprocess
    import sys

    import yaml

    model = tmp_path / "yolo11n-pose.pt"
    shutil.copyfile(ensure_default_model(Path(__file__).resolve().parent.parent / "models"), model)
    config = tmp_path / "streams.yaml"
    config.write_text(
        yaml.safe_dump({"detector": {"model": str(model)}, "cameras": {"plaza": {"url": str(square_mp4)}}}),
        encoding="utf-8",
    )
    command = [sys.executable, "-m", "monitor", "export", "--int8", "-c", str(config), "--imgsz", str(IMGSZ)]
    first = subprocess.run([*command, "--frames", "16"], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert f"imgsz {IMGSZ}: " in first.stdout and "(built)" in first.stdout and "MAE" in first.stdout
    assert find_int8(model, IMGSZ) is not None or "REFUSED" in first.stdout
    again = subprocess.run([*command, "--frames", "16"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "(cached)" in again.stdout, again.stdout + again.stderr
    only = subprocess.run([*command, "--frames", "16", "--camera", "plaza"], capture_output=True, text=True)
    assert only.returncode == 0 and "(cached)" in only.stdout  # the same camera's frames: the same model
    wrong = subprocess.run([*command, "--camera", "gate"], capture_output=True, text=True, timeout=600)
    assert wrong.returncode == 1 and "unknown camera(s) gate (known: plaza)" in wrong.stderr


def test_a_full_disk_ends_the_int8_build_with_a_clear_error_and_leaves_nothing_half_made(
    tmp_path: Path, square_mp4: Path
) -> None:
    """The models folder is on a real small file system that fills up while `monitor export --int8` writes the
    quantized model: one line saying the disk is full (OpenVINO itself only says "iostream error"), no half-made
    model in the cache or beside it, the f32 export it was built from intact; with room again it builds."""
    import subprocess
    import sys

    import yaml

    with small_tmpfs(tmp_path / "models", "48m") as models:
        model = models / "yolo11n-pose.pt"
        shutil.copyfile(ensure_default_model(Path(__file__).resolve().parent.parent / "models"), model)
        assert ensure_export(model, ExportSettings("openvino")).rebuilt  # what INT8 is quantized from
        config = tmp_path / "streams.yaml"
        config.write_text(
            yaml.safe_dump({"detector": {"model": str(model)}, "cameras": {"plaza": {"url": str(square_mp4)}}}),
            encoding="utf-8",
        )
        command = [sys.executable, "-m", "monitor", "export", "--int8", "-c", str(config), "--imgsz", str(IMGSZ)]
        filler = fill(models, leave_bytes=1 << 20)
        full = subprocess.run([*command, "--frames", "16"], capture_output=True, text=True, timeout=600)
        assert full.returncode == 1, full.stdout + full.stderr
        assert f"imgsz {IMGSZ}: DetectorError: INT8 model at imgsz {IMGSZ} not built: the disk holding" in full.stderr
        assert f"{models}/yolo11n-pose.exports is full (" in full.stderr and "MB free" in full.stderr
        exports = model.with_name("yolo11n-pose.exports")
        assert not list(exports.glob(".*.part")), "the half-written model was left behind"
        assert find_int8(model, IMGSZ) is None
        assert not ensure_export(model, ExportSettings("openvino")).rebuilt  # the f32 export still verifies
        filler.unlink()
        again = subprocess.run([*command, "--frames", "16"], capture_output=True, text=True, timeout=600)
        assert again.returncode == 0 and "(built)" in again.stdout, again.stdout + again.stderr
        assert find_int8(model, IMGSZ) is not None or "REFUSED" in again.stdout


def test_engine_builds_int8_in_the_background_and_switches_its_camera(
    model_copy: Path, square_mp4: Path, tmp_path: Path
) -> None:
    """`precision: auto` on a VNNI CPU with no INT8 model: the running engine builds one (a niced
    `monitor export --int8` process), keeps detecting at its rate meanwhile, then runs the camera on it."""
    import threading
    import time

    import yaml

    from detectors.precision import int8_instructions
    from monitor.config import load_config
    from monitor.engine import Engine

    if int8_instructions(read_cpu_info().flags) is None:
        pytest.skip("this CPU has none of INT8_FLAGS: precision auto would not run INT8 here")
    size = IMGSZ - 32  # a size no other test quantizes
    assert find_int8(model_copy, size) is None
    config = tmp_path / "streams.yaml"
    camera = {"url": str(square_mp4), "detect_fps": 2, "detector": {"imgsz": size, "calibrate": False}}
    data = {"data_dir": str(tmp_path / "data"), "detector": {"model": str(model_copy)}, "cameras": {"plaza": camera}}
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    engine = Engine(load_config(config), node="int8-test", int8_after_s=0.0)
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while engine.int8_builds is None or engine.int8_builds.running != size:
            assert time.monotonic() < deadline, "the INT8 build did not start"
            time.sleep(0.1)
        cam = engine.cameras["plaza"]
        assert cam.detector is not None and "no INT8 model is built yet" in cam.detector.describe()
        started, before = time.monotonic(), cam.detections
        deadline = time.monotonic() + 300
        while engine.int8_builds.running == size:
            assert time.monotonic() < deadline, "the INT8 build did not end"
            time.sleep(0.1)
        took, detected = time.monotonic() - started, cam.detections - before
        assert took > 5 and detected >= 0.8 * 2 * took, (took, detected)  # the camera kept its 2 detections/s
        built = find_int8(model_copy, size)
        assert built is not None  # passed or refused, it is cached: no build at the next start
        # the camera's detector is reopened and runs what auto chooses with this verdict (INT8 at its fitted
        # threshold if the gate passed; else as before, saying the gate refused it)
        want, why = choose_cpu_precision(read_cpu_info().flags, "auto", built.verdict)
        deadline = time.monotonic() + 60
        while f"precision {want}: {why}" not in cam.detector.describe():
            assert time.monotonic() < deadline, (cam.detector.describe(), want, why)
            time.sleep(0.1)
        assert (str(built.path) in cam.detector.describe()) == built.verdict.passed
        assert engine.int8_builds.tried == {size}  # built once; nothing else wanted
        assert (tmp_path / "data" / f"int8-build-{size}.log").read_text().count(f"imgsz {size}: ") == 1
    finally:
        engine.stop_event.set()
        thread.join(60)
    assert not thread.is_alive()
