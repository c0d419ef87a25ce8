"""Quiet-street scenes made from the real sample footage: the empty square, and the square with people now and then.

``sample_videos/square.mp4`` has people walking through almost every frame, unlike a village camera that mostly
watches an empty street. The median of frames spread over the whole clip is the square without anyone on it
(nobody stands still long enough to survive the median). A village scene is that background for long stretches,
with short passages of the real footage composited back in: each passage frame's people (the pixels that differ
from the background) are pasted onto it, fading in and out over a few frames, so the background stays identical
between passages and only the people change the picture. Used by tests (the motion gate on real video) and by
``bench/streams.py --scene village`` / ``--idle``; the clips are made on demand, never committed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]

FPS = 10  # square.mp4's rate
DIFF_MIN = 30  # grey levels a pixel differs from the background to count as a person's (H.264 noise is below)
FADE_FRAMES = 3  # people fade in and out over 0.3 s instead of popping up
# (start s, seconds) in square.mp4 pasted onto the empty square: a group of six (QUIET of tests/support/media.py,
# 1-2 of them in its lower 60 %), a group of six, and two people walking apart (small against the whole view)
TWO_PEOPLE = (40.0, 5.0)
PASSAGES: tuple[tuple[float, float], ...] = ((25.2, 5.6), (3.0, 4.0), TWO_PEOPLE)


def read_frames(source: Path, every: int = 1) -> Iterator[Image]:
    """Every ``every``-th frame of ``source`` as BGR."""
    with av.open(str(source)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % every == 0:
                yield np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)


def median_background(source: Path, samples: int = 80) -> Image:
    """The per-pixel median of ``samples`` frames spread over the clip: the scene without the people passing."""
    with av.open(str(source)) as container:
        total = container.streams.video[0].frames or 800
    stack = np.stack(list(read_frames(source, max(1, total // samples))))
    return np.asarray(np.median(stack, axis=0), dtype=np.uint8)


def people_mask(frame: Image, background: Image) -> npt.NDArray[np.float32]:
    """Where ``frame`` shows something the background does not (0..1, soft edges)."""
    diff = cv2.absdiff(frame, background).max(axis=2)
    mask = (diff > DIFF_MIN).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    mask = cv2.dilate(mask, np.ones((9, 9), np.uint8))
    return np.asarray(cv2.GaussianBlur(mask.astype(np.float32), (9, 9), 0), dtype=np.float32)


def composite(frame: Image, background: Image, strength: float = 1.0) -> Image:
    """``frame``'s people pasted onto ``background`` (``strength`` < 1 while fading in or out)."""
    alpha = (people_mask(frame, background) * strength)[..., None]
    return np.asarray(background * (1.0 - alpha) + frame * alpha, dtype=np.float32).round().astype(np.uint8)


def passage(source: Path, background: Image, start_s: float, seconds: float) -> Iterator[Image]:
    """The people of ``source`` from ``start_s`` for ``seconds`` on the empty background, faded in and out."""
    first, count = round(start_s * FPS), round(seconds * FPS)
    frames = read_frames(source)
    for i, frame in enumerate(frames):
        if i < first:
            continue
        k = i - first
        if k >= count:
            break
        strength = min(1.0, (k + 1) / FADE_FRAMES, (count - k) / FADE_FRAMES)
        yield composite(frame, background, strength)


def village_frames(source: Path, background: Image, timeline: Sequence[tuple[str, float, float]]) -> Iterator[Image]:
    """Frames for ``timeline``: ("empty", seconds, 0) holds the background, ("people", start_s, seconds) a passage."""
    for kind, a, b in timeline:
        if kind == "empty":
            for _ in range(round(a * FPS)):
                yield background
        else:
            yield from passage(source, background, a, b)


def village_timeline(empty_s: float = 14.0) -> list[tuple[str, float, float]]:
    """Empty street, a passage, empty street, ...: people in view ~26 % of the 57 s with the default 14 s gaps."""
    timeline: list[tuple[str, float, float]] = []
    for start, seconds in PASSAGES:
        timeline += [("empty", empty_s, 0.0), ("people", start, seconds)]
    return timeline


def encode(frames: Iterator[Image], size: tuple[int, int], out: Path) -> Path:
    """Encode BGR frames at FPS into an H.264 MP4 near-losslessly (the bench re-encodes it like a camera)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.mp4")
    w, h = size
    args = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24"]
    args += ["-s", f"{w}x{h}", "-r", str(FPS), "-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", "16"]
    args += ["-g", str(2 * FPS), "-bf", "0", "-pix_fmt", "yuv420p", str(tmp)]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        for frame in frames:
            proc.stdin.write(np.ascontiguousarray(frame).tobytes())
    finally:
        proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError(f"ffmpeg failed encoding {out.name}")
    tmp.replace(out)
    return out


def make_scene(source: Path, scene: str, out_dir: Path, empty_s: float = 14.0) -> Path:
    """``empty``: 20 s of the empty square; ``village``: ``village_timeline``. Cached in ``out_dir`` by name."""
    out = out_dir / f"{source.stem}_{scene}_{empty_s:g}s.mp4"
    if out.is_file():
        return out
    background = median_background(source)
    size = (background.shape[1], background.shape[0])
    if scene == "empty":
        return encode(iter([background] * (20 * FPS)), size, out)
    if scene == "village":
        return encode(village_frames(source, background, village_timeline(empty_s)), size, out)
    raise ValueError(f"unknown scene {scene!r}")
