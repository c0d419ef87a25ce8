"""The motion gate on real footage: two people walking into the empty square (tests/support/scenes.py) are seen,
the empty square is not, and a camera whose picture stands still parks (keyframes only) and wakes on the next change.

The two people cover little of the view: the earlier gate (mean difference of a 64x36 thumbnail over 2 grey levels)
never saw them on this street (monitor/analyze/motion.py)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from monitor.analyze.motion import changed, thumbnail
from monitor.ingest.worker import PARK_AFTER_S, Source, StreamWorker
from tests.support.scenes import FPS, TWO_PEOPLE, encode, median_background, village_frames

ROOT = Path(__file__).resolve().parents[1]
SQUARE = ROOT / "sample_videos" / "square.mp4"
EMPTY_S = 12.0  # then people for PEOPLE_S, then empty again
PEOPLE_S = 4.0
GOP_S = 2.0  # encode(): a keyframe every 2 s


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The empty square for EMPTY_S, people passing for PEOPLE_S, the empty square again (H.264, 768x576, 10 fps)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("apt-get install ffmpeg")
    background = median_background(SQUARE)
    start, _ = TWO_PEOPLE
    timeline = [("empty", EMPTY_S, 0.0), ("people", start, PEOPLE_S), ("empty", 6.0, 0.0)]
    out = tmp_path_factory.mktemp("scenes") / "street.mp4"
    return encode(village_frames(SQUARE, background, timeline), (background.shape[1], background.shape[0]), out)


def _sampled(video: Path, every_s: float = 0.5) -> Iterator[tuple[float, npt.NDArray[np.uint8]]]:
    """(seconds, BGR frame at 640x480) every ``every_s``, as the worker hands frames to the detection loop."""
    step = round(every_s * FPS)
    with av.open(str(video)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % step == 0:
                yield i / FPS, np.asarray(frame.reformat(width=640, height=480, format="bgr24").to_ndarray(), np.uint8)


def test_the_gate_sees_people_come_and_go_and_not_the_empty_street(street: Path) -> None:
    reference = None
    moved_at: list[float] = []
    for t, image in _sampled(street):
        thumb = thumbnail(image)
        if changed(reference, thumb):  # the engine keeps the picture it last saw move as the reference
            reference = thumb
            moved_at.append(t)
    empty_before = [t for t in moved_at if 0 < t < EMPTY_S]
    assert not empty_before, f"the empty street counted as moving at {empty_before}"
    assert any(EMPTY_S <= t <= EMPTY_S + 1.0 for t in moved_at), f"people walking in were not seen: {moved_at}"
    gone = EMPTY_S + PEOPLE_S
    assert any(gone <= t <= gone + 1.0 for t in moved_at), (
        "the street emptying must count as a change, or the last detections (people) are reused for an empty street"
    )
    assert not [t for t in moved_at if t > gone + 1.0], "once empty again the street stays still"


def test_a_still_camera_parks_and_wakes_on_the_next_keyframe_that_moved(street: Path) -> None:
    """Parked, only keyframes are decoded and looked at; people walking in end it at the first keyframe they are
    on, and from there every frame is decoded again (the detector sees them at the detection rate)."""
    speed = 2.0  # camera time runs twice as fast as the test's clock: a frame every 0.25 s to catch
    ready = threading.Event()
    source = Source(str(street), is_file=True, speed=speed, loop=False)
    worker = StreamWorker("street", source, 2.0, 0.0, max_side=640, frame_ready=ready)
    worker.parkable = lambda: True  # the camera's motion gate is on
    seen: dict[int, float] = {}  # frame seq -> camera time since the start
    parked_seen = False
    t0: float | None = None
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and worker.status().last_error != "end of file":
            frame = worker.latest()
            if frame is not None and frame.seq not in seen:
                t0 = frame.ts if t0 is None else t0
                seen[frame.seq] = frame.ts - t0
            parked_seen = parked_seen or worker.status().parked
            ready.wait(0.1)
            ready.clear()
    finally:
        worker.stop()
    times = sorted(seen.values())
    assert parked_seen, "the camera never parked on a still picture"
    parked_stretch = [t for t in times if PARK_AFTER_S + GOP_S < t < EMPTY_S - 0.1]
    assert parked_stretch, f"no frame while parked: {times}"
    assert all(abs(t / GOP_S - round(t / GOP_S)) < 0.05 for t in parked_stretch), f"parked, not keyframes: {times}"
    with_people = [t for t in times if EMPTY_S <= t < EMPTY_S + PEOPLE_S]
    assert with_people and with_people[0] <= EMPTY_S + 0.1, f"the keyframe people walked in on was missed: {times}"
    off_keyframe = [t for t in with_people if abs(t / GOP_S - round(t / GOP_S)) > 0.05]
    assert len(off_keyframe) >= 4, f"after waking every frame must be decoded again (2/s): {with_people}"
