"""Test scenarios cut from the real sample footage with ffmpeg (real people, known counts)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

# Stretches of sample_videos/square.mp4 whose person counts in the lower 60 % of the image were
# measured frame by frame with the default detector (imgsz 960): CROWD has 4-6 people, QUIET 1-2.
CROWD = (50.5, 11.0)
QUIET = (25.2, 5.6)
LOWER_ZONE = [[0.0, 0.4], [1.0, 0.4], [1.0, 1.0], [0.0, 1.0]]
# The live camera clip (conftest ``live_mp4``): a usual camera setting, one keyframe a second
LIVE_FPS = 15
LIVE_GOP = 15


def cut_scenario(source: Path, segments: Sequence[tuple[float, float]], out: Path) -> Path:
    """Concatenate (start, duration) segments of ``source`` into an H.264 MP4 (GOP 2 s, no B-frames)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("apt-get install ffmpeg")
    args = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y"]
    for start, duration in segments:
        args += ["-ss", str(start), "-t", str(duration), "-i", str(source)]
    inputs = "".join(f"[{i}:v]" for i in range(len(segments)))
    args += [
        "-filter_complex",
        f"{inputs}concat=n={len(segments)}:v=1[v]",
        "-map",
        "[v]",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-profile:v",
        "baseline",
        "-pix_fmt",
        "yuv420p",
        "-r",
        "10",
        "-g",
        "20",
        "-keyint_min",
        "20",
        "-sc_threshold",
        "0",
        "-bf",
        "0",
        str(out),
    ]
    subprocess.run(args, check=True)
    return out
