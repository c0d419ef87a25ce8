"""Hardware video decoding (NVDEC, Intel Quick Sync, ...) for a camera's detect stream, when the machine has it.

Decoding is a third of what a sub-stream camera costs the engine on a CPU, and nearly all of a 1080p one's
(bench/RESULTS.md); a GPU box decodes on NVDEC for about a third of the CPU cores (same file, "GPU path"). A
configured device is checked once per process by decoding a tiny clip made in memory: FFmpeg quietly decodes on the
CPU when it has no such device, so only a frame that really came from the device counts. A device that fails the
check, or a stream the device cannot decode, decodes on the CPU as before and the camera's status says why: the
engine never stops over a missing or broken GPU.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import av
import numpy as np
from av.codec.hwaccel import HWAccel, hwdevices_available

log = logging.getLogger(__name__)

HwaccelMode = Literal["none", "auto", "cuda", "qsv", "vaapi", "vulkan"]
AUTO_ORDER: tuple[str, ...] = ("cuda", "qsv", "vaapi")  # NVIDIA first: a box with both decodes where it infers
PROBE_SIZE = (256, 144)  # above every decoder's minimum picture size (NVDEC: 48x16)

_checked: dict[str, str | None] = {}
_checked_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class DecodeChoice:
    """Where a camera's frames are decoded: ``device`` (None: on the CPU) and why, for its status and log."""

    device: str | None
    reason: str

    def hwaccel(self) -> HWAccel | None:
        """What ``av.open`` takes; a stream the device cannot decode falls back to the CPU decoder."""
        return None if self.device is None else HWAccel(self.device, allow_software_fallback=True)


def _probe_packets() -> list[av.Packet]:  # type: ignore[type-arg]
    """A three-frame H.264 clip (no B-frames), encoded in memory with PyAV's own x264."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height = PROBE_SIZE
    encoder.pix_fmt, encoder.time_base = "yuv420p", Fraction(1, 25)
    encoder.options = {"bframes": "0", "tune": "zerolatency"}
    packets: list[av.Packet] = []  # type: ignore[type-arg]
    for i in range(3):
        picture = np.full((PROBE_SIZE[1], PROBE_SIZE[0], 3), 40 * i, np.uint8)
        frame = av.VideoFrame.from_ndarray(picture, format="bgr24").reformat(format="yuv420p")
        frame.pts = i
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    return packets


def check_device(device: str) -> str | None:
    """Why ``device`` cannot decode H.264 here (None: it can), found by decoding a tiny clip on it."""
    available = hwdevices_available()
    if device not in available:
        return f"this FFmpeg (PyAV {av.__version__}) has no {device} support (it has {', '.join(available) or 'none'})"
    try:
        decoder = av.CodecContext.create("h264", "r", hwaccel=HWAccel(device, allow_software_fallback=False))
        frames = [f for p in [*_probe_packets(), None] for f in decoder.decode(p)]
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if not frames:
        return "the device decoded no frame of a test clip"
    if not decoder.is_hwaccel:
        return "FFmpeg decoded a test clip on the CPU (no usable device)"
    return None


def device_problem(device: str) -> str | None:
    """``check_device``, once per process and device (each camera asks at every connection)."""
    with _checked_lock:
        if device not in _checked:
            _checked[device] = check_device(device)
            if _checked[device] is None:
                log.info("hardware decoding: %s works", device)
            else:
                log.warning("hardware decoding: %s unavailable: %s", device, _checked[device])
        return _checked[device]


def choose_decode(mode: HwaccelMode, problem: Callable[[str], str | None] = device_problem) -> DecodeChoice:
    """Where to decode for a camera's ``hwaccel`` setting: ``none`` the CPU, a device name that device when it works,
    ``auto`` the first of ``AUTO_ORDER`` that works. Anything unusable decodes on the CPU, saying why."""
    if mode == "none":
        return DecodeChoice(None, "cpu")
    devices = AUTO_ORDER if mode == "auto" else (mode,)
    failed = []
    for device in devices:
        why = problem(device)
        if why is None:
            return DecodeChoice(device, device if mode != "auto" else f"{device} (auto)")
        failed.append(f"{device}: {why}")
    return DecodeChoice(None, f"cpu ({'; '.join(failed)})" if mode != "auto" else f"cpu (auto: {'; '.join(failed)})")
