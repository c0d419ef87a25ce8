"""Benchmark: how many RTSP cameras one machine holds at 2 detections/s, engine vs the naive peer.

Not a test. Starts a real GStreamer RTSP server on loopback (tests/support/rtsp_loop_server.py under
Debian's /usr/bin/python3) serving camera-like variants of sample_videos/square.mp4 made with ffmpeg
(1080p25 H.264 GOP 2 s, and a 640x360 substream), then runs K cameras in a fresh subprocess per trial:

* full: the whole engine as ``monitor run`` runs it (``Engine.run``: embedded Redis, outbox, dispatcher, a
  zone and a gathering rule per camera, status thread with the live picture, health checks), calibration off;
* engine: monitor.ingest.worker.StreamWorker per camera + monitor.engine.Engine.detect_once (newest
  frame of each camera, batched, stale frames skipped) with the fastest detector (create_detector);
* peer: one Ultralytics ``model.predict(source=url, stream=True, vid_stride=...)`` loop per camera,
  each in its own thread with its own ``.pt`` model (the way most people build it).

Scenes (``--scene``): ``square`` (the sample footage: people in every frame), ``village`` (the empty square with
short passages of the real people pasted back in, tests/support/scenes.py; the full engine runs its motion gate,
the peer has none) and ``empty`` (the empty square, sensor noise only). ``--idle`` measures one full-engine camera
on the empty square once it has parked, against the #15 target of 0.02 cores.

Per trial: detections achieved vs scheduled (2/s per camera), CPU-seconds per camera-second (the
worker process only; the RTSP server's CPU is reported apart), RSS, latency from a frame's arrival
to its detection result, and the share of CPU spent in ingest threads (demux + decode + convert).
A camera count is "held" when fewer than 5% of scheduled detections are missing.

    PYTHONPATH=. python bench/streams.py --quick        # smoke run, ~1 min
    PYTHONPATH=. python bench/streams.py                # capacity search, ~10 min
    PYTHONPATH=. python bench/streams.py --modes full --same-k 1,2,16 --variants 360p25 --no-capacity  # fixed cost
    PYTHONPATH=. python bench/streams.py --scene village --modes full,peer --same-k 2 --variants 360p25 \
        --no-capacity --duration 57                     # a village street, one whole loop of the clip
    PYTHONPATH=. python bench/streams.py --idle         # one idle camera (empty street, motion gate)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.machine import header, machine
from detectors import create_detector
from monitor.clock import SystemClock
from monitor.config import Config, LoadedConfig
from monitor.engine import Engine
from monitor.ingest.worker import PARK_AFTER_S
from monitor.runtime.camera import CameraRuntime, make_workers
from tests.support.scenes import make_scene

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "tests" / "support" / "rtsp_loop_server.py"
SOURCE = ROOT / "sample_videos" / "square.mp4"
MEDIA_DIR = Path(os.environ.get("VM_BENCH_MEDIA", Path(tempfile.gettempdir()) / "vm-bench-media"))
DETECT_FPS = 2.0
RING_S = 8.0  # pre-event packet ring per camera (the engine's default pre/post roll plus margin)
DROP_LIMIT = 0.05
SCENES = ("square", "village", "empty")
IDLE_TARGET_CORES = 0.02  # #15: an idle camera (static scene, motion gate on) costs less than this
# The GStreamer RTSP server aborts (gst_rtsp_media_get_rates assertion) when several OpenCV/FFmpeg
# clients of the peer connect at the same instant; starting the peer's cameras apart avoids it.
PEER_STAGGER_S = 0.7
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# name -> (ffmpeg scale, encoder bitrate, GOP frames). Temporal noise makes every frame distinct like a
# real sensor (10 fps source upsampled by frame blending to 25 fps; no B-frames, like most cameras).
# GOP 50 = 2 s is a common camera default; many cameras let the sub-stream's I-frame interval be set
# apart, and a 0.5 s GOP there lets the engine decode keyframes only.
VARIANTS: dict[str, tuple[str, str, int]] = {
    "1080p25": ("1920:1080", "4M", 50),
    "360p25": ("640:360", "600k", 50),
    "360p25-gop0.5s": ("640:360", "700k", 12),
}
# A dual-input camera as deployed: the engine detects on the sub-stream and records the main stream
# (demuxed into the pre-event ring, never decoded); the peer has only one input and reads the main stream.
DUAL_INPUTS = {"dual": ("360p25", "1080p25"), "dual-gop0.5s": ("360p25-gop0.5s", "1080p25")}  # (detect, record)
MOUNTS_PER_SERVER = 4  # several small server processes: one GStreamer server aborted under many clients
SERVER_RETRIES = 2


# -- media and server ------------------------------------------------------------------------------
def scene_source(scene: str) -> tuple[Path, int]:
    """The 768x576 10 fps clip a scene's variants are made from, and how many seconds of it they loop."""
    if scene == "square":
        return SOURCE, 20
    source = make_scene(SOURCE, scene, MEDIA_DIR)  # see tests/support/scenes.py for how it is made
    return source, 20 if scene == "empty" else 57  # the whole village timeline: passages and empty stretches


def make_media(variant: str, scene: str = "square") -> Path:
    """The camera-like clip for ``variant`` of ``scene``, encoded once into MEDIA_DIR (not committed)."""
    scale, bitrate, gop = VARIANTS[variant]
    source, seconds = scene_source(scene)
    out = MEDIA_DIR / f"{scene}_{variant}_gop{gop}_{seconds}s.mp4"
    if out.is_file():
        return out
    MEDIA_DIR.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.mp4")
    vf = f"scale={scale}:flags=bicubic,framerate=fps=25,noise=alls=4:allf=t"
    cmd = ["ffmpeg", "-y", "-loglevel", "error", "-i", str(source), "-t", str(seconds), "-an", "-vf", vf]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-bf", "0", "-g", str(gop)]
    cmd += ["-keyint_min", str(gop), "-sc_threshold", "0", "-b:v", bitrate, "-maxrate", bitrate, "-bufsize", "8M"]
    cmd += ["-pix_fmt", "yuv420p", str(tmp)]
    subprocess.run(cmd, check=True)
    os.replace(tmp, out)
    return out


def camera_media(variant: str, scene: str = "square") -> dict[str, Path]:
    """Mount name suffix -> clip for one camera of ``variant`` (two inputs for the dual camera)."""
    if variant in DUAL_INPUTS:
        detect, record = DUAL_INPUTS[variant]
        return {"sub": make_media(detect, scene), "main": make_media(record, scene)}
    return {"main": make_media(variant, scene)}


@contextmanager
def rtsp_servers(
    variant: str, cameras: int, scene: str = "square"
) -> Iterator[tuple[list[dict[str, str]], list[subprocess.Popen[str]]]]:
    """GStreamer RTSP servers with one mount per camera input; yields ([{input: url}] per camera, processes).

    One mount per camera: each mount's timeline starts when its first client connects, so the
    cameras are out of phase like real ones instead of all delivering frames at the same instant.
    At most MOUNTS_PER_SERVER cameras share a server process.
    """
    media = camera_media(variant, scene)
    procs: list[subprocess.Popen[str]] = []
    urls: list[dict[str, str]] = []
    try:
        for first in range(0, cameras, MOUNTS_PER_SERVER):
            group = range(first, min(cameras, first + MOUNTS_PER_SERVER))
            # --unshared: a client that reconnects gets its own pipeline; joining a shared, looping media
            # aborted GStreamer (gst_rtsp_media_get_rates) whenever a struggling peer reconnected
            args = ["/usr/bin/python3", str(SERVER), "--port", "0", "--unshared"]
            for i in group:
                args += [arg for key, path in media.items() for arg in ("--stream", f"cam{i}{key}={path}")]
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
            procs.append(proc)
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("READY"):
                raise RuntimeError(f"RTSP server did not start: {line!r}")
            base = line.split()[1]
            urls += [{key: f"{base}/cam{i}{key}" for key in media} for i in group]
        yield urls, procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


# -- per-process measurement -----------------------------------------------------------------------
def _proc_cpu(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _threads_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds and name of every thread of this process."""
    out: dict[int, tuple[str, float]] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/self/task/{tid}/comm") as fh:
                comm = fh.read().strip()
        except OSError:
            continue
        out[int(tid)] = (comm, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return out


def _threads_wakeups() -> dict[int, int]:
    """Voluntary context switches (a thread blocking, then being woken) of every thread of this process."""
    out: dict[int, int] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/status") as fh:
                for line in fh:
                    if line.startswith("voluntary_ctxt_switches:"):
                        out[int(tid)] = int(line.split()[1])
        except OSError:
            continue
    return out


def _rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB."""
    values: dict[str, float] = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, kb = line.split()[:2]
                values[key] = int(kb) / 1024
    return values["VmRSS:"], values["VmHWM:"]


@dataclass
class Tally:
    """Detections and latencies per camera, fed by the loop under test."""

    cameras: int
    counts: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    measuring: bool = False

    def __post_init__(self) -> None:
        self.counts = [0] * self.cameras

    inferred: int = 0  # results that ran the model (the rest reused earlier detections: motion gate)
    # motion-gated: a still camera looks less often by design (parked: one keyframe per GOP), so what counts as
    # dropped is what the engine itself skipped (frames that went stale waiting), not a shortfall against 2/s
    gated: bool = False
    skipped: int = 0

    def skip(self, n: int) -> None:
        with self.lock:
            if self.measuring:
                self.skipped += n

    def record(self, cam: int, latency_s: float | None, inferred: bool = True) -> None:
        with self.lock:
            if self.measuring:
                self.counts[cam] += 1
                self.inferred += inferred
                if latency_s is not None:
                    self.latencies.append(latency_s)


def _measure(
    tally: Tally,
    duration_s: float,
    decode_tids: set[int],
    started: threading.Event,
    children: Callable[[], list[int]] = list,
    settle_s: float = 3.0,
) -> dict[str, Any]:
    """Wait until every camera produced a result, then measure one window and return the figures.

    ``children``: processes the worker started (the embedded Redis), reported apart as ``child_cores``.
    """
    started.wait(120)
    time.sleep(settle_s)  # settle: first-open bursts and model warm-up are not steady state
    kids = children()
    cpu0, threads0, kids0 = _proc_cpu(), _threads_cpu(), sum(_proc_cpu(pid) for pid in kids)
    wakeups0 = _threads_wakeups()
    with tally.lock:
        tally.measuring = True
    t0 = time.monotonic()
    time.sleep(duration_s)
    with tally.lock:
        tally.measuring = False
        counts, lat = list(tally.counts), list(tally.latencies)
    window = time.monotonic() - t0
    cpu = _proc_cpu() - cpu0
    child_cpu = sum(_proc_cpu(pid) for pid in kids) - kids0
    threads1, wakeups1 = _threads_cpu(), _threads_wakeups()
    decode = sum(
        c1 - threads0.get(tid, (name, 0.0))[1]
        for tid, (name, c1) in threads1.items()
        if tid in decode_tids or name.startswith("av:")
    )
    by_role: dict[str, float] = {}  # Python threads by name; threads the runtimes start natively are "native"
    py_names = {t.native_id: t.name.split(" (")[0].rstrip("_0123456789") for t in threading.enumerate()}
    wakeups_by_role: dict[str, int] = {}  # how often each role's threads blocked and were woken again
    for tid, (name, c1) in threads1.items():
        role = "ingest" if tid in decode_tids or name.startswith("av:") else py_names.get(tid, "native")
        by_role[role] = by_role.get(role, 0.0) + c1 - threads0.get(tid, (name, 0.0))[1]
        wakeups_by_role[role] = wakeups_by_role.get(role, 0) + wakeups1.get(tid, 0) - wakeups0.get(tid, 0)
    per_camera = DETECT_FPS * window
    scheduled = per_camera * tally.cameras
    missing = sum(max(0.0, per_camera - c) for c in counts)  # per camera: one fast camera cannot hide a slow one
    if tally.gated:
        missing = scheduled * tally.skipped / max(1, tally.skipped + sum(counts))
    rss, peak = _rss_mb()
    lat_sorted = sorted(lat)
    return {
        "cameras": tally.cameras,
        "window_s": round(window, 2),
        "detections": sum(counts),
        "scheduled": round(scheduled, 1),
        "dropped_frac": round(missing / scheduled, 4),
        "worst_camera_rate": round(min(counts) / window, 2),
        "cpu_s_per_camera_s": round(cpu / window / tally.cameras, 4),
        "cpu_cores_used": round(cpu / window, 3),
        "child_cores": round(child_cpu / window, 4),
        "inferred_frac": round(tally.inferred / sum(counts), 3) if sum(counts) else 0.0,
        "decode_share": round(decode / cpu, 3) if cpu else 0.0,
        "latency_ms_p50": round(1e3 * statistics.median(lat_sorted), 1) if lat else None,
        "latency_ms_p95": round(1e3 * lat_sorted[int(0.95 * (len(lat_sorted) - 1))], 1) if lat else None,
        "rss_mb": round(rss, 1),
        "rss_peak_mb": round(peak, 1),
        "cpu_cores_by_thread": {k: round(v / window, 4) for k, v in sorted(by_role.items(), key=lambda kv: -kv[1])},
        "wakeups_per_s_by_thread": {k: round(v / window, 1) for k, v in sorted(wakeups_by_role.items())},
    }


class EngineLoop(Engine):
    """The engine's own detection loop (``Engine.detect_once``/``observe``, inherited unchanged) over bare
    camera runtimes: no config file, Redis, rules or speakers are built, so nothing else costs CPU."""

    def __init__(self, cameras: dict[str, CameraRuntime]) -> None:  # deliberately not calling Engine.__init__
        self.cameras = cameras
        self.clock = SystemClock()

    def __getattr__(self, name: str) -> Any:
        """Engine services this benchmark does not start (store, metrics, ...) read as absent."""
        return None


def run_engine(
    cameras: list[dict[str, str]],
    duration_s: float,
    imgsz: int,
    detector: dict[str, Any],
    hwaccel: str = "none",
    settle_s: float = 3.0,
) -> dict[str, Any]:
    """StreamWorker(s) per camera + the engine's batched detect loop with the fastest detector; ``hwaccel`` is every
    camera's decoding setting (e.g. cuda: NVDEC)."""
    cameras_config: dict[str, dict[str, Any]] = {}
    for i, inputs in enumerate(cameras):
        # a second input is record-only (packets into the pre-event ring, never decoded)
        source = (
            {"inputs": {"detect": inputs["sub"], "record": inputs["main"]}}
            if "sub" in inputs
            else {"url": inputs["main"]}
        )
        cameras_config[f"cam{i}"] = {**source, "detect_fps": DETECT_FPS, "hwaccel": hwaccel}
    config = Config.model_validate({"detector": {"imgsz": imgsz, **detector}, "cameras": cameras_config})
    loaded = LoadedConfig(config, ROOT / "streams.yaml", {})
    det = create_detector(config.detector)
    # built as the engine builds them (make_workers: sampled frames converted straight to the detector's size)
    cams = [
        CameraRuntime(name, cam, *make_workers(loaded, name, RING_S), detector=det)
        for name, cam in config.cameras.items()
    ]
    loop = EngineLoop({c.name: c for c in cams})
    workers = {id(w): w for cam in cams for w in (cam.worker, cam.recorder)}.values()
    for w in workers:
        w.start()
    tally = Tally(len(cams))
    started = threading.Event()
    result: dict[str, Any] = {}
    decode_tids: set[int] = set()

    def measure() -> None:
        decode_tids.update(w._thread.native_id or 0 for w in workers)
        result.update(_measure(tally, duration_s, decode_tids, started, settle_s=settle_s))

    meter = threading.Thread(target=measure)
    meter.start()
    seen = [0] * len(cams)
    while meter.is_alive():
        if not loop.detect_once():
            time.sleep(0.005)
            continue
        now = time.time()
        for i, cam in enumerate(cams):
            if cam.detections != seen[i] and cam.last is not None:
                seen[i] = cam.detections
                tally.record(i, now - cam.last.ts)  # Frame.ts = wall time the packet arrived
        if all(seen):
            started.set()
    for w in workers:
        w.stop(2)
    result["record_ring_packets"] = sum(len(cam.recorder.ring) for cam in cams) if cams else 0
    result["detector"] = det.describe()
    result["engine_dropped_superseded"] = sum(c.dropped for c in cams)
    result["sampling"] = [asdict(c.worker.status()) for c in cams[:1]]
    result["decoders"] = sorted({c.worker.status().decoder for c in cams})  # where the cameras decoded (hwaccel)
    return result


def full_config(cameras: list[dict[str, str]], data_dir: Path, imgsz: int, detector: dict[str, Any],
                motion_gate: bool) -> LoadedConfig:  # fmt: skip
    """A streams.yaml as a village would write it: each camera with a zone and a gathering rule (no speakers)."""
    street = [[0.0, 0.4], [1.0, 0.4], [1.0, 1.0], [0.0, 1.0]]
    cams: dict[str, dict[str, Any]] = {}
    rules: list[dict[str, Any]] = []
    for i, inputs in enumerate(cameras):
        source = {"inputs": {"detect": inputs["sub"], "record": inputs["main"]}} if "sub" in inputs else {
            "url": inputs["main"]}  # fmt: skip
        cams[f"cam{i}"] = {**source, "detect_fps": DETECT_FPS, "motion_gate": motion_gate, "zones": {"street": {
            "points": street}}}  # fmt: skip
        rules.append({"kind": "gathering", "camera": f"cam{i}", "zone": "street", "min_people": 4, "dwell_s": 2,
                      "clear_s": 10})  # fmt: skip
    # calibration off: both sides detect at the same imgsz (calibration is a start-up cost, not steady state)
    data = {"data_dir": str(data_dir), "detector": {"imgsz": imgsz, "calibrate": False, **detector},
            "cameras": cams, "rules": rules}  # fmt: skip
    return LoadedConfig(Config.model_validate(data), data_dir / "streams.yaml", {})


def run_full(
    cameras: list[dict[str, str]],
    duration_s: float,
    imgsz: int,
    detector: dict[str, Any],
    motion_gate: bool,
    settle_s: float = 3.0,
) -> dict[str, Any]:
    """The whole engine as ``monitor run`` runs it: embedded Redis, outbox, dispatcher, rules, status thread with
    the live picture, health checks, config watcher; its own ``Engine.run`` loop. Only the tally is added."""
    data_dir = Path(tempfile.mkdtemp(prefix="vm-bench-full-"))
    loaded = full_config(cameras, data_dir, imgsz, detector, motion_gate)
    tally = Tally(len(cameras), gated=motion_gate)
    started = threading.Event()
    names = list(loaded.config.cameras)
    dropped: dict[str, int] = {}

    seen: dict[str, tuple[object, int]] = {}  # camera -> (last observation, detections) counted

    class Tallied(Engine):
        def detect_once(self) -> bool:
            ran = super().detect_once()
            now = time.time()
            for i, name in enumerate(names):
                cam = self.cameras.get(name)
                if cam is None or cam.last is None:
                    continue
                if cam.dropped != dropped.get(name, 0):
                    tally.skip(cam.dropped - dropped.get(name, 0))
                    dropped[name] = cam.dropped
                if name in seen and cam.last is seen[name][0]:
                    continue
                inferred = name not in seen or cam.detections != seen[name][1]
                seen[name] = (cam.last, cam.detections)
                tally.record(i, now - cam.last.ts, inferred)
            if len(seen) == len(names):
                started.set()
            return ran

    engine = Tallied(loaded)
    engine.start()
    workers = [w for cam in engine.cameras.values() for w in {id(w): w for w in (cam.worker, cam.recorder)}.values()]
    decode_tids = {w._thread.native_id or 0 for w in workers}
    result: dict[str, Any] = {}

    def redis_pid() -> list[int]:
        proc = engine.redis_keeper.embedded.proc if engine.redis_keeper is not None else None
        return [proc.pid] if proc is not None else []

    def measure() -> None:
        result.update(_measure(tally, duration_s, decode_tids, started, redis_pid, settle_s))
        engine.stop_event.set()

    meter = threading.Thread(target=measure, name="bench-meter")
    meter.start()
    engine.run(started=True)
    meter.join()
    result["detector"] = next(iter(engine._detectors.values())).describe() if engine._detectors else None
    result["motion_gate"] = motion_gate
    return result


def run_peer(
    cameras: list[dict[str, str]], duration_s: float, imgsz: int, vid_stride: int, conf: float = 0.35
) -> dict[str, Any]:
    """One Ultralytics predict(stream=True) loop per camera, each in a thread with its own .pt model."""
    import cv2

    from detectors import ensure_default_model

    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    stamps: dict[int, tuple[Any, float]] = {}
    stamps_lock = threading.Lock()
    base_capture = cv2.VideoCapture

    class TimedCapture(base_capture):  # type: ignore[misc,valid-type]
        """Notes when each frame handed to Ultralytics left the decoder (~arrival + decode)."""

        def retrieve(self, *args: Any) -> Any:
            ok, image = super().retrieve(*args)
            if ok:
                with stamps_lock:
                    stamps[id(image)] = (image, time.time())
                    if len(stamps) > 512:
                        for key in list(stamps)[:256]:
                            del stamps[key]
            return ok, image

    cv2.VideoCapture = TimedCapture  # type: ignore[misc]  # Ultralytics' LoadStreams opens cameras through it
    from ultralytics.models import YOLO

    model_path = ensure_default_model(ROOT / "models")
    urls = [inputs["main"] for inputs in cameras]  # one input: the main stream
    tally = Tally(len(urls))
    started = threading.Event()
    first = [False] * len(urls)
    stop = threading.Event()
    errors: list[str] = []

    def camera(i: int, url: str) -> None:
        try:
            time.sleep(PEER_STAGGER_S * i)
            model: Any = YOLO(str(model_path))
            stream = model.predict(
                source=url, stream=True, vid_stride=vid_stride, imgsz=imgsz, conf=conf, classes=[0], verbose=False
            )
            for r in stream:
                now = time.time()
                with stamps_lock:
                    hit = stamps.pop(id(r.orig_img), None)
                tally.record(i, now - hit[1] if hit is not None and hit[0] is r.orig_img else None)
                first[i] = True
                if all(first):
                    started.set()
                if stop.is_set():
                    break
        except Exception as exc:  # report, do not hang the benchmark
            errors.append(f"cam{i}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=camera, args=(i, u), daemon=True) for i, u in enumerate(urls)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    # Ultralytics' LoadStreams reader threads ("Thread-N (update)") grab+decode every frame, retrieve every Nth
    decode_tids: set[int] = set()

    def collect_readers() -> None:
        started.wait(120)
        decode_tids.update(t.native_id or 0 for t in threading.enumerate() if t.name.endswith("(update)"))

    reader_scan = threading.Thread(target=collect_readers)
    reader_scan.start()
    result = _measure(tally, duration_s, decode_tids, started)
    reader_scan.join()
    stop.set()
    result["errors"] = errors
    result["vid_stride"] = vid_stride
    return result


# -- orchestration ---------------------------------------------------------------------------------
@dataclass
class Trial:
    """One measured run of ``cameras`` cameras in one mode."""

    mode: str
    variant: str
    cameras: int
    held: bool
    figures: dict[str, Any]
    server_cpu_cores: float
    server_crashes: int = 0  # tries spoiled by an RTSP server abort (the last one counts)


def trial(mode: str, variant: str, k: int, args: argparse.Namespace) -> Trial:
    """Fresh RTSP servers (one mount per camera input) and one worker subprocess for ``k`` cameras.

    Fresh per trial: the GStreamer server has been seen to abort (gst_rtsp_media_get_rates assertion)
    after many clients came and went, which would fail every later trial. A trial during which a server
    aborted measures the server, not the client: it is run again (up to SERVER_RETRIES times).
    """
    for attempt in range(SERVER_RETRIES + 1):
        with rtsp_servers(variant, k, args.scene) as (cameras, servers):
            result = _trial(mode, variant, cameras, [p.pid for p in servers], args)
            crashed = [p.pid for p in servers if p.poll() is not None]
        if not crashed:
            return result
        result.server_crashes = attempt + 1
        print(f"  {mode} K={k}: RTSP server {crashed} aborted during the trial (try {attempt + 1})", flush=True)
    return result


def _trial(
    mode: str, variant: str, cameras: list[dict[str, str]], server_pids: list[int], args: argparse.Namespace
) -> Trial:
    k = len(cameras)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, "--duration", str(args.duration)]
    cmd += ["--imgsz", str(args.imgsz), "--engine-detector", args.engine_detector, "--vid-stride", str(args.vid_stride)]
    cmd += ["--peer-imgsz", str(args.peer_imgsz or args.imgsz), "--peer-conf", str(args.peer_conf)]
    cmd += ["--scene", args.scene, "--motion-gate", args.motion_gate, "--settle", str(args.settle)]
    cmd += ["--hwaccel", args.hwaccel]
    cmd += [json.dumps(inputs) for inputs in cameras]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    srv0, t0 = sum(_proc_cpu(pid) for pid in server_pids), time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.duration + 240, check=False)
    try:
        server = (sum(_proc_cpu(pid) for pid in server_pids) - srv0) / (time.monotonic() - t0)
    except OSError:  # a server process died: the trial says so below
        server = float("nan")
    figures = _worker_figures(proc.stdout)
    if proc.returncode != 0 or figures is None:  # counts as not held; the search goes on
        print(f"  {mode} K={k}: worker failed ({proc.returncode}): {proc.stderr[-1500:]}", flush=True)
        return Trial(mode, variant, k, False, {"errors": [proc.stderr[-1500:]]}, round(server, 3))
    held = figures["dropped_frac"] < DROP_LIMIT and not figures.get("errors")
    t = Trial(mode, variant, k, held, figures, round(server, 3))
    f = figures
    print(
        f"  {mode:6s} {variant:14s} K={k:2d} {'HELD' if held else 'lost'}: dropped {100 * f['dropped_frac']:.1f}% "
        f"cpu/cam-s {f['cpu_s_per_camera_s']:.3f} (cores {f['cpu_cores_used']:.2f}) "
        f"decode {100 * f['decode_share']:.0f}% "
        f"lat p50/p95 {f['latency_ms_p50']}/{f['latency_ms_p95']} ms rss {f['rss_mb']:.0f} MB "
        f"(servers {server:.2f} cores)",
        flush=True,
    )
    return t


def _worker_figures(stdout: str) -> dict[str, Any] | None:
    """The worker's JSON result line (FFmpeg/OpenCV may print onto the same line after it), or None."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                figures: dict[str, Any] = json.JSONDecoder().raw_decode(line)[0]
            except json.JSONDecodeError:
                return None
            return figures
    return None


def capacity(
    mode: str, variant: str, start: int, step: int, cap: int, args: argparse.Namespace
) -> tuple[int, list[Trial]]:
    """Most cameras held: walk up from ``start`` while held, or down until held."""
    trials: list[Trial] = []
    k = start
    first = trial(mode, variant, k, args)
    trials.append(first)
    direction = step if first.held else -step
    best = k if first.held else 0
    while 1 <= k + direction <= cap:
        k += direction
        t = trial(mode, variant, k, args)
        trials.append(t)
        if direction > 0 and not t.held:
            break
        if t.held:
            best = max(best, k)
            if direction < 0:
                break
    return best, trials


def _ratios(variant: str, k: int, e: dict[str, Any], p: dict[str, Any], engine_mode: str) -> str:
    """One summary line: the engine (``engine_mode``) against the peer at K cameras."""
    fe, fp = e["figures"], p["figures"]
    if not fe.get("cpu_s_per_camera_s") or not fp.get("cpu_s_per_camera_s") or fp.get("errors"):
        return f"  {variant} K={k}: a like-for-like trial failed, no ratios ({fp.get('errors') or fe.get('errors')})"
    gate = f", engine inferred {100 * fe['inferred_frac']:.0f}% of frames" if "inferred_frac" in fe else ""
    return (
        f"  {variant} K={k} {engine_mode} vs peer: cpu/cam-s {fe['cpu_s_per_camera_s']:.3f} vs "
        f"{fp['cpu_s_per_camera_s']:.3f} (x{fe['cpu_s_per_camera_s'] / fp['cpu_s_per_camera_s']:.2f}), rss "
        f"{fe['rss_mb']:.0f} vs {fp['rss_mb']:.0f} MB (x{fe['rss_mb'] / fp['rss_mb']:.2f}), latency p50 "
        f"{fe['latency_ms_p50']} vs {fp['latency_ms_p50']} ms, decode share {100 * fe['decode_share']:.0f}% vs "
        f"{100 * fp['decode_share']:.0f}%{gate}"
    )


def _threads_line(trial_: Trial) -> str:
    """Cores by thread role of one trial (the fixed-overhead view), plus the embedded Redis."""
    f = trial_.figures
    roles = " ".join(f"{k}={v:.4f}" for k, v in f.get("cpu_cores_by_thread", {}).items() if v >= 0.0005)
    wakeups = " ".join(f"{k}={v:g}" for k, v in f.get("wakeups_per_s_by_thread", {}).items() if v >= 1)
    return f"    threads (cores): {roles}; embedded redis {f.get('child_cores', 0.0):.4f}\n    wake-ups/s: {wakeups}"


def main(argv: list[str] | None = None) -> int:
    """CLI: orchestrate (default) or run one worker (--worker)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: like-for-like only, K=2, 6 s windows")
    ap.add_argument(
        "--variants",
        default="360p25,1080p25,dual,dual-gop0.5s",
        help="comma list of " + ",".join([*VARIANTS, *DUAL_INPUTS]),
    )
    ap.add_argument("--modes", default="full,engine,peer", help="full (the whole engine), engine (its loop), peer")
    ap.add_argument("--scene", choices=SCENES, default="square", help="square (people all the time), village "
                    "(an empty street with people now and then) or empty (the street, nobody)")  # fmt: skip
    ap.add_argument("--motion-gate", choices=["auto", "on", "off"], default="auto",
                    help="the full engine's motion gate (auto: on unless --scene square)")  # fmt: skip
    ap.add_argument("--idle", action="store_true",
                    help=f"one camera on the empty street, full engine with the motion gate: is it under "
                         f"{IDLE_TARGET_CORES} cores?")  # fmt: skip
    ap.add_argument("--duration", type=float, default=12.0, help="measured seconds per trial")
    ap.add_argument("--settle", type=float, default=3.0,
                    help="full and engine: seconds after every camera's first result before measuring")  # fmt: skip
    ap.add_argument("--imgsz", type=int, default=640, help="inference size for both (default 640)")
    ap.add_argument("--peer-imgsz", type=int, default=0,
                    help="the peer's inference size when it differs (e.g. the plain size as accurate as the engine's "
                         "calibrated tiles)")  # fmt: skip
    ap.add_argument("--peer-conf", type=float, default=0.35, help="the peer's confidence threshold")
    ap.add_argument(
        "--engine-detector", default="{}", help="engine DetectorConfig overrides as JSON, e.g. '{\"streams\": 1}'"
    )
    ap.add_argument("--hwaccel", default="none", help="engine: every camera's hwaccel setting (e.g. cuda: NVDEC)")
    ap.add_argument("--vid-stride", type=int, default=12, help="peer: detect every Nth frame (25/12 = 2.08/s)")
    ap.add_argument("--same-k", default="4", help="cameras for the like-for-like cost trials (comma list, e.g. 1,2,16)")
    ap.add_argument(
        "--start",
        default="engine:360p25=35,engine:1080p25=12,engine:dual=30,engine:dual-gop0.5s=40,"
        "peer:360p25=10,peer:1080p25=5,peer:dual=5,peer:dual-gop0.5s=5",
        help="first K of each capacity search (mode:variant=K)",
    )
    ap.add_argument("--max-cameras", type=int, default=80, help="capacity search stops here")
    ap.add_argument("--step", type=int, default=0, help="capacity search step (default: a fifth of the start)")
    ap.add_argument("--skip-same-k", action="store_true", help="capacity searches only (no like-for-like trial)")
    ap.add_argument("--no-capacity", action="store_true", help="like-for-like trials only (no capacity search)")
    ap.add_argument("--json", type=Path, default=None, help="write all trials here")
    ap.add_argument("--worker", choices=["full", "engine", "peer"], help=argparse.SUPPRESS)
    ap.add_argument("cameras", nargs="*", help=argparse.SUPPRESS)  # worker: one JSON {input: url} per camera
    args = ap.parse_args(argv)
    cameras = [json.loads(c) for c in args.cameras]
    if args.worker is not None:
        detector = json.loads(args.engine_detector)
        if args.worker == "full":
            gate = args.motion_gate == "on" or (args.motion_gate == "auto" and args.scene != "square")
            figures = run_full(cameras, args.duration, args.imgsz, detector, gate, args.settle)
        elif args.worker == "engine":
            figures = run_engine(cameras, args.duration, args.imgsz, detector, args.hwaccel, args.settle)
        else:
            figures = run_peer(cameras, args.duration, args.peer_imgsz or args.imgsz, args.vid_stride, args.peer_conf)
        print(json.dumps(figures), flush=True)
        os._exit(0)  # reader threads of stopped streams must not delay the exit
    if args.quick:
        args.duration, args.same_k = 6.0, "2"
    if args.idle:  # measured once the camera had time to park (PARK_AFTER_S of a still picture, then a keyframe)
        args.scene, args.modes, args.same_k, args.settle = "empty", "full", "1", max(args.settle, PARK_AFTER_S + 4)
        args.variants = args.variants if "--variants" in (argv or sys.argv) else "360p25"
    variants = args.variants.split(",")
    modes = args.modes.split(",")
    ks = [int(k) for k in args.same_k.split(",")]
    starts = {key: int(v) for key, v in (item.split("=") for item in args.start.split(","))}
    all_trials: list[Trial] = []
    summary: dict[str, dict[str, Any]] = {}
    print(header(), flush=True)
    peer = f"; peer imgsz {args.peer_imgsz or args.imgsz} conf {args.peer_conf:g}"
    print(f"machine: {os.cpu_count()} CPUs; imgsz {args.imgsz}{peer}; engine detector {args.engine_detector}; "
          f"{args.duration:.0f} s windows; scene {args.scene}; motion gate {args.motion_gate}", flush=True)  # fmt: skip
    for variant in variants:
        print(f"{variant}: {', '.join(p.name for p in camera_media(variant, args.scene).values())}", flush=True)
        for mode in modes:
            entry: dict[str, Any] = {"same_k": {}}
            for k in [] if args.skip_same_k else ks:
                same = trial(mode, variant, k, args)
                all_trials.append(same)
                entry["same_k"][k] = asdict(same)
                if mode == "full" and "cpu_cores_by_thread" in same.figures:
                    print(_threads_line(same), flush=True)
            if not (args.quick or args.idle or args.no_capacity):
                start = starts.get(f"{mode}:{variant}", 4)
                step = args.step or max(1, start // 5)
                best, trials = capacity(mode, variant, start, step, args.max_cameras, args)
                all_trials.extend(trials)
                entry["capacity"] = best
            summary[f"{mode}:{variant}"] = entry
    print(f"\nsummary (ratios from this run; scene {args.scene}):")
    for variant in variants:
        p = summary.get(f"peer:{variant}")
        for engine_mode in ("full", "engine"):
            e = summary.get(f"{engine_mode}:{variant}")
            if e and p:
                for k in ks:
                    if k in e["same_k"] and k in p["same_k"]:
                        print(_ratios(variant, k, e["same_k"][k], p["same_k"][k], engine_mode))
                if "capacity" in e and "capacity" in p:
                    ratio = e["capacity"] / p["capacity"] if p["capacity"] else float("inf")
                    print(f"  {variant}: cameras held {e['capacity']} vs {p['capacity']} (x{ratio:.2f})")
        for engine_mode in ("full", "engine"):
            e = summary.get(f"{engine_mode}:{variant}")
            per_k = {k: t["figures"].get("cpu_s_per_camera_s") for k, t in (e or {}).get("same_k", {}).items()}
            if len(per_k) > 1 and all(per_k.values()):
                base_k = max(per_k)
                line = ", ".join(f"K={k} {v:.4f} (x{v / per_k[base_k]:.2f})" for k, v in sorted(per_k.items()))
                print(f"  {variant} {engine_mode}: cpu/cam-s by K, against K={base_k}: {line}")
        if args.idle and (e := summary.get(f"full:{variant}")) and 1 in e["same_k"]:
            cores = e["same_k"][1]["figures"].get("cpu_cores_used")
            redis_cores = e["same_k"][1]["figures"].get("child_cores", 0.0)
            if cores is not None:
                verdict = "met" if cores + redis_cores < IDLE_TARGET_CORES else "NOT met"
                print(f"  {variant} idle camera (empty street, motion gate on): {cores:.4f} cores + embedded Redis "
                      f"{redis_cores:.4f}: target < {IDLE_TARGET_CORES} {verdict}")  # fmt: skip
    if args.json is not None:
        result = {"machine": machine(), "args": vars(args), "summary": summary,
                  "trials": [asdict(t) for t in all_trials]}  # fmt: skip
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
