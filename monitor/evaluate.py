"""Measured accuracy: ``monitor analyze`` (counts for every frame of a file) and ``monitor eval`` (vs. ground truth).

The pure parts (MOTChallenge parsing, IoU matching, count and detection metrics) take plain arrays
so they are tested without video or a model; the two commands only add decoding and the detector.

Conventions (MOT17, as in the official devkit/TrackEval preprocessing):

* frames in MOT files are 1-based; ``frame = decode index + 1``;
* a ground-truth row counts as a person when its ``conf`` column is not 0 and its class is 1
  (pedestrian) or absent (files without a class column, e.g. MOT15's 10-column format);
* rows of the "ambiguous person" classes (2 person on vehicle, 7 static person, 8 distractor,
  12 reflection) are ignore regions: a prediction matching one (IoU >= threshold) is dropped, so it
  is neither a true nor a false positive and does not count either way in the people count;
* other classes (vehicles, occluders) are not people and are skipped.

Matching is greedy by IoU (highest IoU pair first, each box used once), not Hungarian: scipy is not
a dependency, and for pedestrians at IoU >= 0.5 the two rarely differ (two ground-truth boxes can
only both overlap one prediction above 0.5 when they overlap each other heavily).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from detectors.config import DetectorConfig
from detectors.matching import IOU_THRESHOLD, greedy_match

if TYPE_CHECKING:
    from rich.progress import Progress

    from detectors.base import Detector
    from monitor.config import LoadedConfig, ZoneConfig
    from monitor.types import Detections

BoxArray = npt.NDArray[np.float64]  # (N, 4) x1, y1, x2, y2 in pixels

PEDESTRIAN = 1
IGNORE_CLASSES = frozenset({2, 7, 8, 12})  # person on vehicle, static person, distractor, reflection
BATCH = 4  # frames per detect() call: amortises per-call overhead without holding many frames


# --------------------------------------------------------------------------- MOT ground truth


class MotFormatError(ValueError):
    """A ground-truth file that is not MOTChallenge CSV (message names the line)."""


@dataclass(frozen=True, slots=True)
class FrameTruth:
    """The ground truth of one frame: people to find, and regions where a detection is not judged."""

    people: BoxArray
    ignore: BoxArray

    @property
    def count(self) -> int:
        """People in the frame (the number a perfect counter reports)."""
        return len(self.people)


def _empty_boxes() -> BoxArray:
    return np.zeros((0, 4), dtype=np.float64)


def parse_mot(text: str, min_visibility: float = 0.0, source: str = "<gt>") -> dict[int, FrameTruth]:
    """Parse MOTChallenge rows ``frame,id,x,y,w,h[,conf[,class[,visibility]]]`` (or MOT15's 10 columns).

    Returns ground truth per 1-based frame for every frame that has at least one row (zero-marked
    rows included, so a frame annotated only with ignored rows still appears). Column variants:

    * 6-9 columns: optional ``conf`` (0 = ignore the row), ``class`` (1 = pedestrian), ``visibility``;
    * 10 columns (MOT15/16 2D format): ``conf`` then world ``x,y,z`` -- no class, every row a person.

    Rows below ``min_visibility`` become ignore regions, so the detector is not punished either way.
    """
    people: dict[int, list[list[float]]] = {}
    ignore: dict[int, list[list[float]]] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        cells = [c.strip() for c in line.replace(";", ",").split(",")]
        if cells and cells[-1] == "":
            cells.pop()
        if not 6 <= len(cells) <= 10:
            raise MotFormatError(f"{source}:{lineno}: expected 6-10 comma-separated columns, got {len(cells)}")
        try:
            values = [float(c) for c in cells]
        except ValueError:
            raise MotFormatError(f"{source}:{lineno}: non-numeric value in {line!r}") from None
        frame = int(values[0])
        if frame != values[0] or frame < 1:
            raise MotFormatError(f"{source}:{lineno}: frame must be a 1-based integer, got {cells[0]}")
        x, y, w, h = values[2:6]
        if w <= 0 or h <= 0:
            raise MotFormatError(f"{source}:{lineno}: box width and height must be positive")
        conf = values[6] if len(values) >= 7 else 1.0
        cls = int(values[7]) if 8 <= len(values) <= 9 else PEDESTRIAN
        visibility = values[8] if len(values) == 9 else 1.0
        box = [x, y, x + w, y + h]
        people.setdefault(frame, [])
        ignore.setdefault(frame, [])
        if cls in IGNORE_CLASSES:
            ignore[frame].append(box)
        elif cls != PEDESTRIAN:
            continue
        elif conf == 0:
            continue  # MOT17: zero-marked rows are not evaluated (a detection there is a false positive)
        elif visibility < min_visibility:
            ignore[frame].append(box)
        else:
            people[frame].append(box)
    return {
        f: FrameTruth(
            np.asarray(people[f], dtype=np.float64).reshape(-1, 4),
            np.asarray(ignore[f], dtype=np.float64).reshape(-1, 4),
        )
        for f in sorted(people)
    }


def load_mot(path: str | Path, min_visibility: float = 0.0) -> dict[int, FrameTruth]:
    """``parse_mot`` on a file (errors name the file and line)."""
    path = Path(path)
    return parse_mot(path.read_text(encoding="utf-8"), min_visibility, source=str(path))


# --------------------------------------------------------------------------- matching and metrics


@dataclass(frozen=True, slots=True)
class FrameScore:
    """One evaluated frame: counts and detection matches (``frame`` is 1-based, as in MOT)."""

    frame: int
    gt_count: int
    pred_count: int
    tp: int
    fp: int
    fn: int

    @property
    def error(self) -> int:
        """Signed count error, predicted minus true."""
        return self.pred_count - self.gt_count


def _heights(boxes: BoxArray) -> npt.NDArray[np.float64]:
    return boxes[:, 3] - boxes[:, 1]


def restrict_height(truth: FrameTruth, min_height: float) -> FrameTruth:
    """Turn people shorter than ``min_height`` px into ignore regions (Caltech's "reasonable" protocol).

    Lets the score say how the detector does on the sizes a camera is meant for (the issue's target
    is people 50-150 px tall) without pretending the smaller people are not there.
    """
    if min_height <= 0:
        return truth
    small = _heights(truth.people) < min_height
    return FrameTruth(truth.people[~small], np.concatenate([truth.ignore, truth.people[small]]))


def score_frame(
    frame: int, pred: npt.ArrayLike, truth: FrameTruth, threshold: float = IOU_THRESHOLD, min_height: float = 0.0
) -> FrameScore:
    """Match one frame's predicted boxes against its truth.

    Predictions matching an ignore region are dropped first (they are neither right nor wrong and
    are not counted as people), then the rest are matched to the people. With ``min_height``,
    small people become ignore regions and unmatched predictions that small are dropped too.
    """
    truth = restrict_height(truth, min_height)
    boxes = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    if len(boxes) and (len(truth.ignore) or min_height > 0):
        # Real people take precedence: only predictions not matching a person may be absorbed.
        matched_people = {p for p, _ in greedy_match(boxes, truth.people, threshold)}
        ignored = {p for p, _ in greedy_match(boxes, truth.ignore, threshold)}
        if min_height > 0:
            ignored |= set(np.flatnonzero(_heights(boxes) < min_height).tolist())
        drop = ignored - matched_people
        boxes = boxes[[i for i in range(len(boxes)) if i not in drop]]
    tp = len(greedy_match(boxes, truth.people, threshold))
    return FrameScore(frame, truth.count, len(boxes), tp, len(boxes) - tp, truth.count - tp)


@dataclass(frozen=True, slots=True)
class Summary:
    """Count error and detection quality over the evaluated frames."""

    frames: int
    gt_people: int
    mae: float
    rmse: float
    bias: float
    max_abs_error: int
    exact_frames: float  # share of frames whose count is exactly right
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float


def summarize(scores: Sequence[FrameScore]) -> Summary:
    """MAE, RMSE, bias = mean(pred - gt) of per-frame counts; precision/recall over all matches."""
    if not scores:
        raise ValueError("no frames to summarize")
    errors = np.asarray([s.error for s in scores], dtype=np.float64)
    tp = sum(s.tp for s in scores)
    fp = sum(s.fp for s in scores)
    fn = sum(s.fn for s in scores)
    precision = tp / (tp + fp) if tp + fp else 1.0  # nothing predicted: nothing wrong predicted
    recall = tp / (tp + fn) if tp + fn else 1.0  # nobody there: nobody missed
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Summary(
        frames=len(scores),
        gt_people=sum(s.gt_count for s in scores),
        mae=float(np.mean(np.abs(errors))),
        rmse=float(math.sqrt(np.mean(errors**2))),
        bias=float(np.mean(errors)),
        max_abs_error=int(np.max(np.abs(errors))),
        exact_frames=float(np.mean(errors == 0)),
        tp=tp,
        fp=fp,
        fn=fn,
        precision=precision,
        recall=recall,
        f1=f1,
    )


def frames_to_evaluate(truth: Mapping[int, FrameTruth], every: int | None, total_frames: int | None) -> list[int]:
    """1-based frames to score: every ``every``-th decoded frame (0, N, 2N... -> 1, N+1, ...), else the GT's frames.

    With ``every`` a frame without GT rows is a frame with nobody in it; without it, only frames
    the file mentions are known to be annotated.
    """
    if every is None:
        return sorted(truth)
    if every < 1:
        raise ValueError("--every must be at least 1")
    last = total_frames if total_frames is not None else max(truth, default=0)
    return list(range(1, last + 1, every))


# --------------------------------------------------------------------------- video and detector


def decode_frames(
    video: str | Path, wanted: Callable[[int], bool] | None = None
) -> Iterator[tuple[int, float, npt.NDArray[np.uint8] | None]]:
    """(0-based decode index, pts in seconds, BGR image or None when not ``wanted``) for every decoded frame.

    Frames not wanted are decoded (the codec needs them) but not converted to BGR, which is the
    expensive part of skipping.
    """
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate) if stream.average_rate else None
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0
        for index, frame in enumerate(container.decode(stream)):
            pts = frame.time
            if pts is None:  # no timestamps (raw streams): fall back to the nominal rate
                pts = start + index / rate if rate else float(index)
            image: npt.NDArray[np.uint8] | None = None
            if wanted is None or wanted(index):
                image = np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
            yield index, float(pts), image


def frame_total(video: str | Path) -> int | None:
    """Frame count from the container header (None when it does not say), for the progress bar."""
    import av

    with av.open(str(video)) as container:
        frames = int(container.streams.video[0].frames)
    return frames or None


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(slots=True)
class Timing:
    """Wall time spent inside ``detect()`` (the detector's cost, without decoding or I/O)."""

    seconds: float = 0.0
    frames: int = 0

    def add(self, seconds: float, frames: int) -> None:
        """Record one batch."""
        self.seconds += seconds
        self.frames += frames

    @property
    def mean_ms(self) -> float:
        """Mean milliseconds per frame."""
        return self.seconds * 1e3 / self.frames if self.frames else 0.0


def detect_batches(
    detector: Detector,
    frames: Iterable[tuple[int, float, npt.NDArray[np.uint8]]],
    timing: Timing,
    batch: int = BATCH,
) -> Iterator[tuple[int, float, npt.NDArray[np.uint8], Detections]]:
    """Run the detector ``batch`` frames at a time; yield each frame with its detections, in order."""
    for chunk in _batched(frames, batch):
        started = time.perf_counter()
        results = detector.detect([image for _, _, image in chunk])
        timing.add(time.perf_counter() - started, len(chunk))
        for (index, pts, image), dets in zip(chunk, results, strict=True):
            yield index, pts, image, dets


# --------------------------------------------------------------------------- settings


class SetupError(Exception):
    """Bad command-line input (unknown camera/zone, invalid override); printed, exit code 1."""


@dataclass(frozen=True, slots=True)
class Setup:
    """What the commands run with: detector settings, where relative model paths resolve, the zone."""

    settings: DetectorConfig
    base_dir: Path | None
    camera: str | None
    zone: ZoneConfig | None
    calibrate: bool = False  # no size/tiling/confidence set by hand: calibrate on the video first, as the engine


def parse_override(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with a YAML value (``imgsz=1280``, ``confidence=0.5``, ``tiles={grid: [2, 2]}``)."""
    import yaml

    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise SetupError(f"--set expects KEY=VALUE, got {item!r}")
    return key.strip(), yaml.safe_load(value)


def resolve_setup(config: str | None, camera: str | None, zone: str | None, overrides: Sequence[str] = ()) -> Setup:
    """The camera's detector settings (global ``detector:`` + the camera's overrides) plus ``--set`` on top."""
    from pydantic import ValidationError

    from monitor.runtime.calibration import hand_set

    base_dir: Path | None = None
    zone_config: ZoneConfig | None = None
    changes = dict(parse_override(o) for o in overrides)
    if config is None:
        if camera is not None or zone is not None:
            raise SetupError("--camera and --zone need a config file (-c streams.yaml)")
        settings = DetectorConfig()
        calibrate = hand_set(settings, changes) is None
    else:
        loaded = _load_config(config)
        cameras = loaded.config.cameras
        if camera is None:
            if len(cameras) != 1:
                raise SetupError(
                    f"{loaded.path} has {len(cameras)} cameras; pick one with --camera ({', '.join(cameras)})"
                )
            camera = next(iter(cameras))
        if camera not in cameras:
            raise SetupError(f"unknown camera {camera!r} (known: {', '.join(cameras)})")
        settings = loaded.detector_for(camera)
        base_dir = loaded.base_dir
        calibrate = hand_set(loaded.config.detector, {**cameras[camera].detector, **changes}) is None
        if zone is not None:
            zones = cameras[camera].zones
            if zone not in zones:
                raise SetupError(f"camera {camera!r} has no zone {zone!r} (known: {', '.join(zones) or 'none'})")
            zone_config = zones[zone]
    if changes:
        merged = {**settings.model_dump(), **changes}
        try:
            settings = DetectorConfig.model_validate(merged)
        except ValidationError as exc:
            details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise SetupError(f"--set: {details}") from None
    return Setup(settings, base_dir, camera, zone_config, calibrate)


def calibrated(setup: Setup, video: str | Path) -> DetectorConfig:
    """The settings to run: calibrated on the video's first minutes (printed to stderr) unless set by hand."""
    if not setup.calibrate:
        return setup.settings
    from monitor.runtime.calibration import calibrate_images, sample_video

    record, settings = calibrate_images(sample_video(str(video)), setup.settings, setup.base_dir)
    print(f"calibration on {Path(video).name}: {record.summary()}", file=sys.stderr)
    return settings


def _load_config(path: str) -> LoadedConfig:
    from monitor.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise SetupError("\n".join(str(p) for p in exc.problems)) from None


def settings_label(settings: DetectorConfig) -> str:
    """The settings that change what is found, in one line (non-default fields only, plus imgsz/conf)."""
    data = settings.model_dump(exclude_defaults=True)
    data.setdefault("imgsz", settings.imgsz)
    data.setdefault("confidence", settings.confidence)
    data.pop("max_batch", None)
    data.pop("device", None)
    return " ".join(f"{k}={v}" for k, v in data.items())


def _progress() -> Progress:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )


# --------------------------------------------------------------------------- commands


ZoneCounter = Callable[["Detections", tuple[int, int]], int]


def analyze_video(
    detector: Detector,
    video: str | Path,
    out: str | Path,
    count: ZoneCounter | None = None,
    batch: int = BATCH,
    label: str = "",
) -> tuple[int, Timing]:
    """Write ``frame_index,pts_s,count`` for every decoded frame; return (rows, detector timing).

    ``count`` turns a frame's detections and (width, height) into its count (default: all of them),
    e.g. ``zone_counter`` for one zone. Decoding runs a few frames ahead on a thread (PyAV releases
    the GIL) so the detector never waits for the decoder.
    """
    video = Path(video)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    timing = Timing()
    frames = _prefetch(((i, pts, img) for i, pts, img in decode_frames(video) if img is not None), 2 * batch)
    rows = 0
    started = time.perf_counter()
    with out.open("w", newline="", encoding="utf-8") as fh, _progress() as progress:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["frame_index", "pts_s", "count"])
        task = progress.add_task(f"{video.name} {label}".strip(), total=frame_total(video), rate="")
        for index, pts, image, dets in detect_batches(detector, frames, timing, batch):
            n = len(dets) if count is None else count(dets, (int(image.shape[1]), int(image.shape[0])))
            writer.writerow([index, f"{pts:.3f}", n])
            rows += 1
            progress.update(task, advance=1, rate=f"{rows / (time.perf_counter() - started):.1f} fps")
    return rows, timing


def zone_counter(zone: ZoneConfig) -> ZoneCounter:
    """Count people whose feet are in the zone, after the zone's filter, exactly as the engine does."""
    from monitor.analyze.filters import DetectionFilter, count_zones_filtered
    from monitor.analyze.zones import Polygon, to_pixels

    built: dict[tuple[int, int], tuple[Polygon, DetectionFilter | None]] = {}

    def count(detections: Detections, size: tuple[int, int]) -> int:
        if size not in built:
            built[size] = (
                to_pixels(zone.points, size, zone.relative),
                zone.filter.build(size) if zone.filter is not None else None,
            )
        polygon, flt = built[size]
        filters = {"zone": flt} if flt is not None else {}
        return count_zones_filtered(detections, {"zone": polygon}, filters)["zone"].count

    return count


def _prefetch(items: Iterable[Any], depth: int) -> Iterator[Any]:
    """Produce ``items`` on a daemon thread, at most ``depth`` ahead; exceptions re-raise in the consumer."""
    import queue
    import threading

    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            q.put(("error", exc))

    thread = threading.Thread(target=produce, name="analyze-decode", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()


def cmd_analyze(args: argparse.Namespace) -> int:
    """Count people on every decoded frame of a file and write ``frame_index,pts_s,count``."""
    try:
        setup = resolve_setup(args.config, args.camera, args.zone, args.set or ())
    except SetupError as exc:
        print(exc, file=sys.stderr)
        return 1
    video = Path(args.video)
    if not video.is_file():
        print(f"no such video: {video}", file=sys.stderr)
        return 1
    from detectors import create_detector

    settings = calibrated(setup, video)
    detector = create_detector(settings, setup.base_dir)
    started = time.perf_counter()
    counter = zone_counter(setup.zone) if setup.zone is not None else None
    label = f"({settings_label(settings)})"
    rows, timing = analyze_video(detector, video, args.counts_csv, counter, args.batch, label)
    elapsed = time.perf_counter() - started
    print(
        f"{args.counts_csv}: {rows} frames in {elapsed:.1f} s ({rows / elapsed if elapsed else 0:.1f} fps; "
        f"detector {timing.mean_ms:.0f} ms/frame in batches of {args.batch}; {detector.describe()})",
        file=sys.stderr,
    )
    return 0


@dataclass(frozen=True, slots=True)
class EvalReport:
    """What ``monitor eval`` prints (``--json`` dumps it as is)."""

    video: str
    gt: str
    detector: str
    settings: dict[str, Any]
    iou_threshold: float
    min_height: float
    matching: str
    ms_per_frame: float
    summary: Summary
    frames: list[FrameScore]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict (per-frame scores included)."""
        data = asdict(self)
        data["target_mae"] = 0.5
        data["target_met"] = self.summary.mae <= 0.5
        return data


def detect_frames(
    detector: Detector,
    video: str | Path,
    frames: Sequence[int],
    batch: int = BATCH,
    on_frame: Callable[[], None] | None = None,
) -> tuple[dict[int, BoxArray], Timing]:
    """Predicted xyxy boxes for the given 1-based frames (only those are converted and detected)."""
    wanted = set(frames)
    decoded = ((i, pts, img) for i, pts, img in decode_frames(video, lambda i: i + 1 in wanted) if img is not None)
    timing = Timing()
    boxes: dict[int, BoxArray] = {}
    for index, _pts, _image, dets in detect_batches(detector, decoded, timing, batch):
        boxes[index + 1] = np.asarray(dets.xyxy, dtype=np.float64).reshape(-1, 4)
        if on_frame is not None:
            on_frame()
    missing = wanted - set(boxes)
    if missing:
        raise SetupError(f"{len(missing)} ground-truth frame(s) beyond the end of the video, e.g. {min(missing)}")
    return boxes, timing


def score_frames(
    predictions: Mapping[int, npt.ArrayLike],
    truth: Mapping[int, FrameTruth],
    threshold: float = IOU_THRESHOLD,
    min_height: float = 0.0,
) -> list[FrameScore]:
    """Score every predicted frame against its truth (a frame without truth had nobody in it)."""
    empty = FrameTruth(_empty_boxes(), _empty_boxes())
    return [score_frame(f, predictions[f], truth.get(f, empty), threshold, min_height) for f in sorted(predictions)]


def cmd_eval(args: argparse.Namespace) -> int:
    """Score the configured detector against MOTChallenge ground truth on the annotated frames."""
    try:
        setup = resolve_setup(args.config, args.camera, None, args.set or ())
        truth = load_mot(args.gt, args.min_visibility)
    except (SetupError, MotFormatError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 1
    if not Path(args.video).is_file():
        print(f"no such video: {args.video}", file=sys.stderr)
        return 1
    frames = frames_to_evaluate(truth, args.every, frame_total(args.video) if args.every else None)
    if not frames:
        print(f"{args.gt}: no annotated frames", file=sys.stderr)
        return 1
    from detectors import create_detector

    settings = calibrated(setup, args.video)
    detector = create_detector(settings, setup.base_dir)
    try:
        with _progress() as progress:
            task = progress.add_task(f"eval ({settings_label(settings)})", total=len(frames), rate="")
            predictions, timing = detect_frames(
                detector, args.video, frames, args.batch, lambda: progress.advance(task)
            )
    except SetupError as exc:
        print(exc, file=sys.stderr)
        return 1
    scores = score_frames(predictions, truth, args.iou, args.min_height)
    report = EvalReport(
        video=str(args.video),
        gt=str(args.gt),
        detector=detector.describe(),
        settings=settings.model_dump(),
        iou_threshold=args.iou,
        min_height=args.min_height,
        matching="greedy by IoU",
        ms_per_frame=timing.mean_ms,
        summary=summarize(scores),
        frames=scores,
    )
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        print_report(report, per_frame=args.per_frame)
    return 0


def print_report(report: EvalReport, per_frame: bool = False) -> None:
    """Readable tables: the summary, and optionally every frame."""
    from rich.console import Console
    from rich.table import Table

    s = report.summary
    console = Console()
    sizes = f", people >= {report.min_height:g} px" if report.min_height > 0 else ""
    console.print(f"{report.video} vs {report.gt}: {s.frames} frames, {s.gt_people} people{sizes}", markup=False)
    console.print(report.detector, markup=False, highlight=False)
    table = Table("metric", "value", title=f"count error and detection (IoU >= {report.iou_threshold}, greedy)")
    verdict = "met" if s.mae <= 0.5 else "NOT met"
    table.add_row("count MAE (people/frame)", f"{s.mae:.3f}  (target <= 0.5: {verdict})")
    table.add_row("count RMSE", f"{s.rmse:.3f}")
    table.add_row("count bias mean(pred - gt)", f"{s.bias:+.3f}")
    table.add_row("max |error|", str(s.max_abs_error))
    table.add_row("frames exactly right", f"{s.exact_frames:.0%}")
    table.add_row("precision", f"{s.precision:.3f}  (TP {s.tp}, FP {s.fp})")
    table.add_row("recall", f"{s.recall:.3f}  (FN {s.fn})")
    table.add_row("F1", f"{s.f1:.3f}")
    table.add_row("detector ms/frame", f"{report.ms_per_frame:.0f}")
    console.print(table)
    if per_frame:
        frames = Table("frame", "gt", "pred", "err", "TP", "FP", "FN", title="per frame (1-based, as in the GT)")
        for f in report.frames:
            frames.add_row(
                str(f.frame), str(f.gt_count), str(f.pred_count), f"{f.error:+d}", str(f.tp), str(f.fp), str(f.fn)
            )
        console.print(frames)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=None, help="streams.yaml whose detector settings to use (default: none)")
    p.add_argument("--camera", default=None, help="camera whose detector overrides apply (default: the only one)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a detector setting on top of the config, e.g. --set imgsz=1280 (repeatable)",
    )
    p.add_argument("--batch", type=int, default=BATCH, help=f"frames per detector call (default {BATCH})")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``analyze`` and ``eval`` to the ``monitor`` command."""
    analyze = subparsers.add_parser(
        "analyze",
        help="count people on every frame of a video file (CSV: frame_index,pts_s,count)",
        description="Run the camera's detector on every decoded frame, as fast as possible, and write counts.",
    )
    analyze.add_argument("video", help="video file")
    _add_common(analyze)
    analyze.add_argument("--zone", default=None, help="count only feet inside this zone of the camera")
    analyze.add_argument("--counts-csv", required=True, metavar="OUT.csv", help="where to write the counts")
    analyze.set_defaults(func=cmd_analyze)

    ev = subparsers.add_parser(
        "eval",
        help="count error and precision/recall against MOTChallenge ground truth",
        description="Score the configured detector on the annotated frames of a video (MOT17 conventions).",
    )
    ev.add_argument("--video", required=True, help="video file the ground truth was made on")
    ev.add_argument("--gt", required=True, help="MOTChallenge gt.txt (frame = decode index + 1)")
    _add_common(ev)
    ev.add_argument(
        "--every",
        type=int,
        default=None,
        metavar="N",
        help="score decoded frames 0, N, 2N, ... (a frame without GT rows has nobody); default: the GT's frames",
    )
    ev.add_argument("--iou", type=float, default=IOU_THRESHOLD, help="IoU for a match (default 0.5)")
    ev.add_argument("--min-visibility", type=float, default=0.0, help="GT below this visibility is ignored")
    ev.add_argument(
        "--min-height",
        type=float,
        default=0.0,
        metavar="PX",
        help="ignore people (and unmatched detections) shorter than this, e.g. 50 for the issue's 50-150 px target",
    )
    ev.add_argument("--json", action="store_true", help="one JSON object (summary and per-frame) on stdout")
    ev.add_argument("--per-frame", action="store_true", help="also print the per-frame table")
    ev.set_defaults(func=cmd_eval)
