"""Benchmark: how many RTSP cameras one machine holds at 2 detections/s, engine vs the naive peer.

Not a test. Starts a real GStreamer RTSP server on loopback (tests/support/rtsp_loop_server.py under
Debian's /usr/bin/python3) serving camera-like variants of sample_videos/square.mp4 made with ffmpeg
(1080p25 H.264 GOP 2 s, and a 640x360 substream), then runs K cameras in a fresh subprocess per trial:

* engine: monitor.ingest.worker.StreamWorker per camera + monitor.engine.Engine.detect_once (newest
  frame of each camera, batched, stale frames skipped) with the fastest detector (create_detector);
* peer: one Ultralytics ``model.predict(source=url, stream=True, vid_stride=...)`` loop per camera,
  each in its own thread with its own ``.pt`` model (the way most people build it).

Per trial: detections achieved vs scheduled (2/s per camera), CPU-seconds per camera-second (the
worker process only; the RTSP server's CPU is reported apart), RSS, latency from a frame's arrival
to its detection result, and the share of CPU spent in ingest threads (demux + decode + convert).
A camera count is "held" when fewer than 5% of scheduled detections are missing.

    PYTHONPATH=. python bench/streams.py --quick        # smoke run, ~1 min
    PYTHONPATH=. python bench/streams.py                # capacity search, ~10 min
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.machine import header, machine
from detectors import create_detector
from monitor.config import Config, LoadedConfig
from monitor.engine import Engine
from monitor.runtime.camera import CameraRuntime, make_workers

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "tests" / "support" / "rtsp_loop_server.py"
SOURCE = ROOT / "sample_videos" / "square.mp4"
MEDIA_DIR = Path(os.environ.get("VM_BENCH_MEDIA", Path(tempfile.gettempdir()) / "vm-bench-media"))
DETECT_FPS = 2.0
RING_S = 8.0  # pre-event packet ring per camera (the engine's default pre/post roll plus margin)
DROP_LIMIT = 0.05
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
def make_media(variant: str, seconds: int = 20) -> Path:
    """The camera-like clip for ``variant``, encoded once into MEDIA_DIR (not committed)."""
    scale, bitrate, gop = VARIANTS[variant]
    out = MEDIA_DIR / f"square_{variant}_gop{gop}_{seconds}s.mp4"
    if out.is_file():
        return out
    MEDIA_DIR.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.mp4")
    vf = f"scale={scale}:flags=bicubic,framerate=fps=25,noise=alls=4:allf=t"
    cmd = ["ffmpeg", "-y", "-loglevel", "error", "-i", str(SOURCE), "-t", str(seconds), "-an", "-vf", vf]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-bf", "0", "-g", str(gop)]
    cmd += ["-keyint_min", str(gop), "-sc_threshold", "0", "-b:v", bitrate, "-maxrate", bitrate, "-bufsize", "8M"]
    cmd += ["-pix_fmt", "yuv420p", str(tmp)]
    subprocess.run(cmd, check=True)
    os.replace(tmp, out)
    return out


def camera_media(variant: str) -> dict[str, Path]:
    """Mount name suffix -> clip for one camera of ``variant`` (two inputs for the dual camera)."""
    if variant in DUAL_INPUTS:
        detect, record = DUAL_INPUTS[variant]
        return {"sub": make_media(detect), "main": make_media(record)}
    return {"main": make_media(variant)}


@contextmanager
def rtsp_servers(variant: str, cameras: int) -> Iterator[tuple[list[dict[str, str]], list[subprocess.Popen[str]]]]:
    """GStreamer RTSP servers with one mount per camera input; yields ([{input: url}] per camera, processes).

    One mount per camera: each mount's timeline starts when its first client connects, so the
    cameras are out of phase like real ones instead of all delivering frames at the same instant.
    At most MOUNTS_PER_SERVER cameras share a server process.
    """
    media = camera_media(variant)
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

    def record(self, cam: int, latency_s: float | None) -> None:
        with self.lock:
            if self.measuring:
                self.counts[cam] += 1
                if latency_s is not None:
                    self.latencies.append(latency_s)


def _measure(tally: Tally, duration_s: float, decode_tids: set[int], started: threading.Event) -> dict[str, Any]:
    """Wait until every camera produced a result, then measure one window and return the figures."""
    started.wait(120)
    time.sleep(3.0)  # settle: first-open bursts and model warm-up are not steady state
    cpu0, threads0 = _proc_cpu(), _threads_cpu()
    with tally.lock:
        tally.measuring = True
    t0 = time.monotonic()
    time.sleep(duration_s)
    with tally.lock:
        tally.measuring = False
        counts, lat = list(tally.counts), list(tally.latencies)
    window = time.monotonic() - t0
    cpu = _proc_cpu() - cpu0
    threads1 = _threads_cpu()
    decode = sum(
        c1 - threads0.get(tid, (name, 0.0))[1]
        for tid, (name, c1) in threads1.items()
        if tid in decode_tids or name.startswith("av:")
    )
    by_role: dict[str, float] = {}  # Python threads by name; threads the runtimes start natively are "native"
    py_names = {t.native_id: t.name.split(" (")[0].rstrip("_0123456789") for t in threading.enumerate()}
    for tid, (name, c1) in threads1.items():
        role = "ingest" if tid in decode_tids or name.startswith("av:") else py_names.get(tid, "native")
        by_role[role] = by_role.get(role, 0.0) + c1 - threads0.get(tid, (name, 0.0))[1]
    per_camera = DETECT_FPS * window
    scheduled = per_camera * tally.cameras
    missing = sum(max(0.0, per_camera - c) for c in counts)  # per camera: one fast camera cannot hide a slow one
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
        "decode_share": round(decode / cpu, 3) if cpu else 0.0,
        "latency_ms_p50": round(1e3 * statistics.median(lat_sorted), 1) if lat else None,
        "latency_ms_p95": round(1e3 * lat_sorted[int(0.95 * (len(lat_sorted) - 1))], 1) if lat else None,
        "rss_mb": round(rss, 1),
        "rss_peak_mb": round(peak, 1),
        "cpu_cores_by_thread": {k: round(v / window, 3) for k, v in sorted(by_role.items(), key=lambda kv: -kv[1])},
    }


class EngineLoop(Engine):
    """The engine's own detection loop (``Engine.detect_once``/``observe``, inherited unchanged) over bare
    camera runtimes: no config file, Redis, rules or speakers are built, so nothing else costs CPU."""

    def __init__(self, cameras: dict[str, CameraRuntime]) -> None:  # deliberately not calling Engine.__init__
        self.cameras = cameras

    def __getattr__(self, name: str) -> Any:
        """Engine services this benchmark does not start (store, metrics, ...) read as absent."""
        return None


def run_engine(
    cameras: list[dict[str, str]], duration_s: float, imgsz: int, detector: dict[str, Any]
) -> dict[str, Any]:
    """StreamWorker(s) per camera + the engine's batched detect loop with the fastest detector."""
    cameras_config: dict[str, dict[str, Any]] = {}
    for i, inputs in enumerate(cameras):
        # a second input is record-only (packets into the pre-event ring, never decoded)
        source = (
            {"inputs": {"detect": inputs["sub"], "record": inputs["main"]}}
            if "sub" in inputs
            else {"url": inputs["main"]}
        )
        cameras_config[f"cam{i}"] = {**source, "detect_fps": DETECT_FPS}
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
        result.update(_measure(tally, duration_s, decode_tids, started))

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
    return result


def run_peer(cameras: list[dict[str, str]], duration_s: float, imgsz: int, vid_stride: int) -> dict[str, Any]:
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
                source=url, stream=True, vid_stride=vid_stride, imgsz=imgsz, conf=0.35, classes=[0], verbose=False
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
        with rtsp_servers(variant, k) as (cameras, servers):
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


def main(argv: list[str] | None = None) -> int:
    """CLI: orchestrate (default) or run one worker (--worker)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: like-for-like only, K=2, 6 s windows")
    ap.add_argument(
        "--variants",
        default="360p25,1080p25,dual,dual-gop0.5s",
        help="comma list of " + ",".join([*VARIANTS, *DUAL_INPUTS]),
    )
    ap.add_argument("--modes", default="engine,peer")
    ap.add_argument("--duration", type=float, default=12.0, help="measured seconds per trial")
    ap.add_argument("--imgsz", type=int, default=640, help="inference size for both (default 640)")
    ap.add_argument(
        "--engine-detector", default="{}", help="engine DetectorConfig overrides as JSON, e.g. '{\"streams\": 1}'"
    )
    ap.add_argument("--vid-stride", type=int, default=12, help="peer: detect every Nth frame (25/12 = 2.08/s)")
    ap.add_argument("--same-k", type=int, default=4, help="cameras for the like-for-like cost trial")
    ap.add_argument(
        "--start",
        default="engine:360p25=35,engine:1080p25=12,engine:dual=30,engine:dual-gop0.5s=40,"
        "peer:360p25=10,peer:1080p25=5,peer:dual=5,peer:dual-gop0.5s=5",
        help="first K of each capacity search (mode:variant=K)",
    )
    ap.add_argument("--max-cameras", type=int, default=80, help="capacity search stops here")
    ap.add_argument("--step", type=int, default=0, help="capacity search step (default: a fifth of the start)")
    ap.add_argument("--skip-same-k", action="store_true", help="capacity searches only (no like-for-like trial)")
    ap.add_argument("--json", type=Path, default=None, help="write all trials here")
    ap.add_argument("--worker", choices=["engine", "peer"], help=argparse.SUPPRESS)
    ap.add_argument("cameras", nargs="*", help=argparse.SUPPRESS)  # worker: one JSON {input: url} per camera
    args = ap.parse_args(argv)
    cameras = [json.loads(c) for c in args.cameras]
    if args.worker == "engine":
        detector = json.loads(args.engine_detector)
        print(json.dumps(run_engine(cameras, args.duration, args.imgsz, detector)), flush=True)
        os._exit(0)  # reader threads of stopped streams must not delay the exit
    if args.worker == "peer":
        print(json.dumps(run_peer(cameras, args.duration, args.imgsz, args.vid_stride)), flush=True)
        os._exit(0)
    if args.quick:
        args.duration, args.same_k = 6.0, 2
    variants = args.variants.split(",")
    modes = args.modes.split(",")
    starts = {key: int(v) for key, v in (item.split("=") for item in args.start.split(","))}
    all_trials: list[Trial] = []
    summary: dict[str, dict[str, Any]] = {}
    print(header(), flush=True)
    print(f"machine: {os.cpu_count()} CPUs; imgsz {args.imgsz}; {args.duration:.0f} s windows", flush=True)
    for variant in variants:
        print(f"{variant}: {', '.join(p.name for p in camera_media(variant).values())}", flush=True)
        for mode in modes:
            entry: dict[str, Any] = {}
            if not args.skip_same_k:
                same = trial(mode, variant, args.same_k, args)
                all_trials.append(same)
                entry["same_k"] = asdict(same)
            if not args.quick:
                start = starts.get(f"{mode}:{variant}", 4)
                step = args.step or max(1, start // 5)
                best, trials = capacity(mode, variant, start, step, args.max_cameras, args)
                all_trials.extend(trials)
                entry["capacity"] = best
            summary[f"{mode}:{variant}"] = entry
    print("\nsummary (engine/peer ratios from this run):")
    for variant in variants:
        e, p = summary.get(f"engine:{variant}"), summary.get(f"peer:{variant}")
        if not e or not p or "same_k" not in e or "same_k" not in p:
            continue
        fe, fp = e["same_k"]["figures"], p["same_k"]["figures"]
        k = e["same_k"]["cameras"]
        if "cpu_s_per_camera_s" not in fe or "cpu_s_per_camera_s" not in fp:
            print(f"  {variant}: a like-for-like trial failed, no ratios")
            continue
        line = (
            f"  {variant}: at K={k}: cpu/cam-s {fe['cpu_s_per_camera_s']:.3f} vs {fp['cpu_s_per_camera_s']:.3f} "
            f"(x{fe['cpu_s_per_camera_s'] / fp['cpu_s_per_camera_s']:.2f}), rss {fe['rss_mb']:.0f} vs "
            f"{fp['rss_mb']:.0f} MB (x{fe['rss_mb'] / fp['rss_mb']:.2f}), latency p50 {fe['latency_ms_p50']} vs "
            f"{fp['latency_ms_p50']} ms, decode share {100 * fe['decode_share']:.0f}% vs "
            f"{100 * fp['decode_share']:.0f}%"
        )
        if "capacity" in e and "capacity" in p:
            ratio = e["capacity"] / p["capacity"] if p["capacity"] else float("inf")
            line += f"; cameras held {e['capacity']} vs {p['capacity']} (x{ratio:.2f})"
        print(line)
    if args.json is not None:
        result = {"machine": machine(), "summary": summary, "trials": [asdict(t) for t in all_trials]}
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
