"""Calibrating a camera: sample its first minutes, measure people with a reference pass, store the choice.

The choice itself is ``detectors.calibration.choose_setting`` (pure). Here: which cameras calibrate (those
without a size, tiling or confidence of their own), where a result is kept (``data_dir/calibration/<digest>.json``,
named by a digest of the camera's detect URL and the model, with the frame size inside: a restart reuses it, a
changed camera, model or frame size recalibrates), sampling frames from a file or stream (the CLI), and the
engine's background ``Calibrator``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from detectors import DEFAULT_MODEL_SHA256, Detector, DetectorConfig, create_detector
from detectors.calibration import (
    METHOD,
    REFERENCE_CONFIDENCE,
    Calibration,
    Choice,
    choose_setting,
    person_heights,
    reference_candidate,
)
from monitor.config import LoadedConfig
from monitor.types import Frame

log = logging.getLogger("monitor.calibration")

HAND_SET = ("imgsz", "tiles", "confidence")  # set for a camera in streams.yaml: the user's choice wins
WINDOW_S = 120.0  # sample the first two minutes...
FRAMES = 12  # ...at this many frames (one reference inference each: ~0.16 s at 1600 on one core, 768x576)
RETRY_S = 600.0  # nobody seen: try again this much later
NICE = 10  # the calibration thread's niceness (Linux), below the detection loop

Image = npt.NDArray[np.uint8]


# --------------------------------------------------------------------------- which cameras, which file


def hand_set(global_settings: DetectorConfig, override: Mapping[str, Any]) -> str | None:
    """Why a camera does not calibrate (None: it does): ``calibrate: false``, or its own size/tiling/confidence.

    The global ``detector:`` imgsz/confidence are the default every camera starts with (and keeps where
    calibration sees nobody); only a camera's own override is a hand-made choice for that view.
    """
    if override.get("calibrate", global_settings.calibrate) is False:
        return "calibrate: false"
    for key in HAND_SET:
        if key in override:
            return f"the camera sets detector.{key}"
    return None


def calibration_off(loaded: LoadedConfig, camera: str) -> str | None:
    """``hand_set`` for a configured camera."""
    return hand_set(loaded.config.detector, loaded.config.cameras[camera].detector)


def model_identity(settings: DetectorConfig, base_dir: Path | None = None) -> str:
    """What the stored choice depends on: the default model's sha256, a model file's size and mtime, or a URL."""
    if settings.model is None:
        return f"sha256:{DEFAULT_MODEL_SHA256}"
    if not isinstance(settings.model, str):  # Triton servers to fail over between
        return ",".join(settings.model)
    from detectors import resolve_model_path

    source = resolve_model_path(settings, base_dir)
    try:
        st = Path(source).stat()
    except (OSError, ValueError):
        return str(source)
    return f"{Path(source).name}:{st.st_size}:{int(st.st_mtime)}"


def record_path(data_dir: Path, url: str, model: str) -> Path:
    """Where a camera's calibration is kept: named by a digest (never by a name from the config)."""
    digest = hashlib.sha256(f"{url}\n{model}\n{METHOD}".encode()).hexdigest()[:24]
    return data_dir / "calibration" / f"{digest}.json"


def load_record(path: Path) -> Calibration | None:
    """The stored calibration, or None when there is none or it cannot be read."""
    try:
        return Calibration.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable calibration %s: %s", path.name, exc)
        return None


def save_record(path: Path, record: Calibration) -> None:
    """Write atomically (a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record.to_json(), ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def reusable(record: Calibration | None, model: str, frame_size: tuple[int, int]) -> bool:
    """A stored choice still applies: made by this method, for this model and frame size."""
    return (
        record is not None
        and record.state == "calibrated"
        and record.method == METHOD
        and record.model == model
        and tuple(record.frame_size) == tuple(frame_size)
    )


# --------------------------------------------------------------------------- measuring


def reference_settings(settings: DetectorConfig, frame_size: tuple[int, int]) -> DetectorConfig:
    """The reference pass's settings: ``settings`` at imgsz 1600 (tiles on large frames), confidence 0.25."""
    ref = reference_candidate(frame_size)
    return Choice(ref.imgsz, REFERENCE_CONFIDENCE, ref.grid).apply(settings)


def measure(detector: Detector, image: Image, scale: float = 1.0) -> list[float]:
    """Heights (in source pixels) of the whole people the reference finds in one image scaled by ``scale``."""
    dets = detector.detect([image])[0]
    h, w = image.shape[:2]
    return [x / scale for x in person_heights(dets.xyxy, (w, h))]


def decide(
    heights: list[float], frames: int, frame_size: tuple[int, int], model: str, at: float | None = None
) -> Calibration:
    """The record for measured heights (``choose_setting`` plus when, on what)."""
    choice, evidence = choose_setting(heights, frame_size, frames=frames)
    return Calibration(
        state="calibrated" if choice is not None else "no_people",
        choice=choice,
        evidence=evidence,
        reference=reference_candidate(frame_size).label + f", conf {REFERENCE_CONFIDENCE:g}",
        frame_size=frame_size,
        at=time.time() if at is None else at,
        model=model,
    )


def calibrate_images(
    images: Iterable[Image],
    settings: DetectorConfig,
    base_dir: Path | None = None,
    reference: Detector | None = None,
) -> tuple[Calibration, DetectorConfig]:
    """Calibrate on the given frames (full resolution, one size); returns the record and the settings to run.

    ``reference``: a detector already built with ``reference_settings`` (else one is built for the first frame).
    """
    heights: list[float] = []
    frames = 0
    frame_size = (0, 0)
    for image in images:
        if reference is None:
            frame_size = (int(image.shape[1]), int(image.shape[0]))
            reference = create_detector(reference_settings(settings, frame_size), base_dir)
        frame_size = (int(image.shape[1]), int(image.shape[0]))
        heights += measure(reference, image)
        frames += 1
    record = decide(heights, frames, frame_size, model_identity(settings, base_dir))
    return record, record.choice.apply(settings) if record.choice is not None else settings


def sample_video(url: str, window_s: float = WINDOW_S, frames: int = FRAMES) -> Iterator[Image]:
    """``frames`` full-resolution frames spread over the first ``window_s`` seconds of a file or stream.

    A file is decoded as fast as it goes; a live stream takes ``window_s`` of real time. A file shorter than
    the window gives frames spread over its length (by its declared duration).
    """
    import av

    with av.open(url, timeout=10.0) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if stream.duration is not None and stream.time_base is not None:
            window_s = min(window_s, float(stream.duration * stream.time_base))
        step = window_s / frames
        start: float | None = None
        taken = 0
        for frame in container.decode(stream):
            pts = frame.time if frame.time is not None else 0.0
            start = pts if start is None else start
            if pts - start >= taken * step:
                yield np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
                taken += 1
                if taken >= frames:
                    return


# --------------------------------------------------------------------------- the engine's calibrator


class FrameSource(Protocol):
    """What the calibrator needs from a camera's stream worker."""

    max_side: int | None

    def latest(self) -> Frame | None:
        """The newest sampled frame."""
        ...


@dataclass
class Job:
    """One camera to calibrate."""

    camera: str
    worker: FrameSource
    settings: DetectorConfig  # the camera's settings now (the default size); the choice replaces imgsz/conf/tiles
    path: Path
    model: str
    due: float = 0.0  # time.monotonic() when to start


def camera_record_path(loaded: LoadedConfig, camera: str, settings: DetectorConfig | None = None) -> Path:
    """Where a configured camera's calibration is kept (under the shared data_dir, whichever node runs it)."""
    settings = loaded.detector_for(camera) if settings is None else settings
    model = model_identity(settings, loaded.base_dir)
    return record_path(loaded.data_dir, loaded.config.cameras[camera].detect_url, model)


def camera_job(loaded: LoadedConfig, camera: str, worker: FrameSource, settings: DetectorConfig) -> Job:
    """The calibration job of a configured camera."""
    model = model_identity(settings, loaded.base_dir)
    return Job(camera, worker, settings, camera_record_path(loaded, camera, settings), model)


@dataclass(frozen=True, slots=True)
class Result:
    """A finished calibration, for the engine's loop to apply (detector None: keep the current one)."""

    camera: str
    worker: FrameSource
    record: Calibration
    settings: DetectorConfig | None
    detector: Detector | None


class Calibrator:
    """One background thread that calibrates cameras one at a time, without holding up detection.

    For each camera: wait for its first frame; reuse the stored choice when it still applies; else take
    ``frames`` full-resolution frames ``window_s / frames`` apart and run the reference model on each as it comes
    (one inference at a time, on a thread at lower priority); choose; store; build the chosen detector (so the
    loop never waits for a model to load) and hand it over through ``results``. The camera detects with its
    current setting meanwhile. Nobody seen: the default stays and the camera is tried again ``retry_s`` later.
    """

    def __init__(
        self,
        build: Callable[[DetectorConfig], Detector],
        base_dir: Path | None,
        window_s: float = WINDOW_S,
        frames: int = FRAMES,
        retry_s: float = RETRY_S,
    ) -> None:
        self.build = build  # the engine's detector cache: the chosen setting may already run for another camera
        self.base_dir = base_dir
        self.window_s = window_s
        self.frames = frames
        self.retry_s = retry_s
        self.results: queue.SimpleQueue[Result] = queue.SimpleQueue()
        self.measured = 0  # reference inferences run (a reused record costs none)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reference: tuple[DetectorConfig, Detector] | None = None

    def add(self, job: Job) -> None:
        """Calibrate this camera (replacing a pending job of the same name); starts the thread if needed."""
        with self._lock:
            self._jobs[job.camera] = job
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="calibration", daemon=True)
                self._thread.start()
        self._wake.set()

    def remove(self, camera: str) -> None:
        """Forget the camera (stopped or restarted): a sampling in progress for it stops at its next frame."""
        with self._lock:
            self._jobs.pop(camera, None)
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread (a reference inference in progress finishes first)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def pending(self) -> list[str]:
        """Cameras still to calibrate."""
        with self._lock:
            return sorted(self._jobs)

    def _current(self, job: Job) -> bool:
        with self._lock:
            return self._jobs.get(job.camera) is job

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # lower this thread only (Linux threads are tasks)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        while not self._stop.is_set():
            with self._lock:
                now = time.monotonic()
                due = sorted((j for j in self._jobs.values() if j.due <= now), key=lambda j: j.due)
                wait = min((j.due - now for j in self._jobs.values()), default=None)
            if not due:
                self._reference = None  # nothing to do now: free the reference model's memory
                self._wake.wait(None if wait is None else max(0.05, wait))
                self._wake.clear()
                continue
            job = due[0]
            try:
                self._calibrate(job)
            except Exception:  # a broken camera or model must not end calibration for the others
                log.exception("calibration of camera %s failed; retrying in %.0f s", job.camera, self.retry_s)
                self._retry(job)

    def _retry(self, job: Job) -> None:
        with self._lock:
            if self._jobs.get(job.camera) is job:
                job.due = time.monotonic() + self.retry_s

    def _finish(self, job: Job) -> bool:
        with self._lock:
            if self._jobs.get(job.camera) is not job:
                return False
            del self._jobs[job.camera]
            return True

    def _next_frame(self, job: Job, after: int, wait_s: float) -> Frame | None:
        """The first frame newer than ``after`` once ``wait_s`` has passed (None: stopped or camera gone)."""
        deadline = time.monotonic() + wait_s
        while not self._stop.is_set() and self._current(job):
            frame = job.worker.latest()
            if frame is not None and frame.seq > after and time.monotonic() >= deadline:
                return frame
            self._stop.wait(0.1)
        return None

    def _reference_for(self, settings: DetectorConfig) -> Detector:
        if self._reference is None or self._reference[0] != settings:
            self._reference = (settings, create_detector(settings, self.base_dir))
        return self._reference[1]

    def _calibrate(self, job: Job) -> None:
        first = self._next_frame(job, 0, 0.0)
        if first is None:
            return
        size = first.size
        stored = load_record(job.path)
        if reusable(stored, job.model, size):
            assert stored is not None and stored.choice is not None
            log.info("camera %s: calibration reused: %s", job.camera, stored.summary())
            self._hand_over(job, stored)
            return
        reference = self._reference_for(reference_settings(job.settings, size))
        restore = job.worker.max_side
        job.worker.max_side = None  # full-resolution frames while measuring
        heights: list[float] = []
        seen = first.seq
        frames = 0
        try:
            for k in range(self.frames):
                frame = self._next_frame(job, seen, 0.0 if k == 0 else self.window_s / self.frames)
                if frame is None:
                    return
                seen = frame.seq
                heights += measure(reference, frame.image, frame.scale)
                frames += 1
                self.measured += 1
        finally:
            job.worker.max_side = restore
        record = decide(heights, frames, size, job.model)
        log.info("camera %s: calibrated: %s", job.camera, record.summary())
        if record.choice is not None:
            save_record(job.path, record)
            self._hand_over(job, record)
        else:
            self.results.put(Result(job.camera, job.worker, record, None, None))
            self._retry(job)

    def _hand_over(self, job: Job, record: Calibration) -> None:
        assert record.choice is not None
        settings = record.choice.apply(job.settings)
        detector = self.build(settings)  # loads here, off the detection loop
        if self._finish(job):
            self.results.put(Result(job.camera, job.worker, record, settings, detector))
