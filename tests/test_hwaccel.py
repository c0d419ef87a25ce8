"""Hardware decoding: a device counts only when a frame really came from it; anything else decodes on the CPU, and
the camera's status says why (a missing or broken GPU never stops a camera)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from av.codec.hwaccel import hwdevices_available

from monitor.ingest.hwaccel import AUTO_ORDER, DecodeChoice, HwaccelMode, check_device, choose_decode
from monitor.ingest.worker import Source, StreamWorker
from tests.support.media import QUIET, cut_scenario
from tests.support.rtsp import RtspCamera
from tests.support.workers import collect

Cameras = Callable[[dict[str, Path]], RtspCamera]
# No GPU device nodes: every hardware decoder must be refused here, whatever FFmpeg pretends.
NO_GPU = not any(Path(p).exists() for p in ("/dev/nvidia0", "/dev/dri", "/dev/nvidiactl"))


def test_the_choice_follows_the_setting_and_names_every_refusal() -> None:
    works: set[str] = {"qsv"}

    def problem(device: str) -> str | None:
        return None if device in works else f"no {device} here"

    assert choose_decode("none", problem) == DecodeChoice(None, "cpu")
    assert choose_decode("auto", problem) == DecodeChoice("qsv", "qsv (auto)")
    assert choose_decode("qsv", problem) == DecodeChoice("qsv", "qsv")
    assert choose_decode("cuda", problem) == DecodeChoice(None, "cpu (cuda: no cuda here)")
    works.clear()
    refused = "; ".join(f"{d}: no {d} here" for d in AUTO_ORDER)
    assert choose_decode("auto", problem) == DecodeChoice(None, f"cpu (auto: {refused})")


@pytest.mark.skipif(not NO_GPU, reason="this machine has GPU device nodes")
@pytest.mark.parametrize("device", ["cuda", "qsv", "vaapi", "vulkan"])
def test_without_a_gpu_every_device_is_refused_with_its_reason(device: str) -> None:
    """FFmpeg decodes on the CPU without a word for some of these (qsv, vulkan, vaapi here): the check decodes a
    clip on the device and refuses it unless the frames came from the device."""
    why = check_device(device)
    assert why, f"{device} passed the check on a machine without a GPU"
    if device not in hwdevices_available():
        assert f"has no {device} support" in why


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["cuda", "auto"])
def test_a_camera_set_to_hardware_decoding_keeps_detecting_and_says_where_it_decodes(
    setting: HwaccelMode, square_mp4: Path, tmp_path: Path, rtsp_cameras: Cameras
) -> None:
    clip = cut_scenario(square_mp4, [QUIET], tmp_path / "cam.mp4")
    server = rtsp_cameras({"cam": clip})
    source = Source(server.url("cam"), is_file=False)
    worker = StreamWorker("cam", source, 2.0, 0.0, hwaccel=setting)
    frames = collect(worker, 5.0)
    decoder = worker.status().decoder
    assert len(frames) >= 5, f"{len(frames)} frames at 2/s in 5 s ({decoder})"
    assert frames[0].image.shape == (576, 768, 3)
    choice = choose_decode(setting)
    if choice.device is None:
        assert decoder == f"h264 on {choice.reason}"
        assert decoder.startswith("h264 on cpu (") and "cuda: " in decoder, decoder
    else:  # a machine with a working device: the frames came from it
        assert decoder == f"h264 on {choice.reason}"


@pytest.mark.slow
def test_a_record_only_input_never_opens_a_device(square_mp4: Path, tmp_path: Path, rtsp_cameras: Cameras) -> None:
    clip = cut_scenario(square_mp4, [QUIET], tmp_path / "cam.mp4")
    server = rtsp_cameras({"cam": clip})
    worker = StreamWorker("cam/record", Source(server.url("cam"), is_file=False), None, 8.0, hwaccel="cuda")
    worker.start()
    deadline = time.monotonic() + 10
    while worker.status().frames < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.stop()
    assert worker.status().decoder == "not decoded"
    assert worker.status().frames >= 10


def test_check_says_where_each_camera_set_to_hardware_decoding_will_decode(
    square_mp4: Path, write_config: Callable[..., Path]
) -> None:
    path = write_config({"cameras": {"a": {"url": str(square_mp4), "hwaccel": "auto"}, "b": {"url": str(square_mp4)}}})
    out = subprocess.run(
        [sys.executable, "-m", "monitor", "check", "-c", str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    [line] = [ln for ln in out.stdout.splitlines() if "hwaccel" in ln]
    assert line == f"  a: hwaccel auto: decodes on {choose_decode('auto').reason}"
