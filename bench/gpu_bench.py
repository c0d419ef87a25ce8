"""Benchmark: the GPU path (issue #15). Run through ``bench/gpu.sh``, which installs what is missing first.

Not a test. On one NVIDIA GPU it measures, each part on its own and tolerant of a missing piece (the
error is recorded and the next part runs):

- ``env``: GPU (nvidia-smi name, driver, memory), CPU model, versions of torch / ultralytics / PyAV /
  FFmpeg / OpenCV / onnxruntime / tensorrt, and which backend ``detectors.select.choose_backend("auto")``
  picks on this machine.
- ``detect``: ms/frame and frames/s at batch 1/8/32/64, imgsz 640, on 64 frames of
  ``sample_videos/square.mp4`` (768x576, letterboxed to 640x480):
  ``ultralytics_fp16`` = one ``YOLO(pt).predict(list_of_frames, half=True, device=0)`` call per pass
  (batch 1 is the per-camera peer's call; larger batches are how the engine batches its cameras);
  ``project_torch_fp16`` / ``project_torch_fp32`` = the project's own ``detectors.yolo.UltralyticsDetector``
  on ``cuda:0`` with ``precision: auto`` (fp16 on CUDA, ``half=True``) and ``precision: fp32`` (what it ran
  before precision existed); ``raw_forward_fp16`` = the fused torch module alone on a (B, 3, 480, 640) fp16
  tensor (the GPU's ceiling without Ultralytics' pre/post-processing).
- ``decode``: PyAV decoding of many concurrent streams (one thread each, looping the file), frames/s
  over a window, with and without NVDEC: ``cpu`` (single-threaded per stream, as the engine's ingest
  sets it up to 1080p), ``nvdec`` (``av.open(..., hwaccel=HWAccel("cuda"))``, frames copied back to
  system memory), ``nvdec_gpu_frames`` (``is_hw_owned=True``: frames stay on the GPU) and ``cuvid`` (the
  ``h264_cuvid`` decoder). Files: ``square.mp4`` and a 1920x1080 25 fps H.264 clip made from it here
  with PyAV's libx264 (veryfast, main, no B-frames, GOP 50, 4 Mb/s).
- ``peer``: the naive Ultralytics loop per camera, K threads each with its own
  ``YOLO(pt).predict(source=clip_1080p, stream=True, half=True, device=0, vid_stride=12)`` (a 25 fps
  camera at 2.08 det/s; OpenCV decodes every frame), aggregate detections/s.
- ``engine``: the engine end to end, as ``bench/streams.py --modes engine`` runs it (``run_engine``: a
  ``StreamWorker`` per camera + ``Engine.detect_once`` batching all cameras on the ``auto`` detector), on K
  cameras that each play the 1080p clip at 25 fps in a loop (files paced like cameras: no RTSP server is needed
  on the box), 2 det/s, with ``hwaccel: none`` (CPU decoding) and ``hwaccel: cuda`` (NVDEC, checked by the
  engine itself: the row says where the cameras really decoded). A K is held when < 5 % of detections are
  missing, as in bench/streams.py; the search doubles K from 16 and then bisects once.
- ``auto``: the detector ``create_detector(DetectorConfig(imgsz=640, max_batch=64))`` builds here
  (whatever ``auto`` resolves to) at the same batches.
- ``tensorrt``: when ``tensorrt`` imports and CUDA is there, the project's export path
  (``detectors.backends.build_backend`` -> ``ensure_export(ExportSettings("engine", half=True, ...))``)
  builds an FP16 engine (dynamic, max batch 64) and it is timed like ``detect``; INT8 too when
  ``GPU_BENCH_INT8_DATA`` names a calibration dataset yaml (the project has no INT8 export setting).
- ``summary``: cameras held at 2 det/s: detection-bound (best frames/s / 2), decode-bound (decoded
  frames/s / 25 for 25 fps cameras), the engine's estimate min(both), and the peer's measured
  aggregate det/s / 2.08.

Results: ``<out>/gpu_bench.json`` (rewritten after every part, so a timeout keeps what was done).

    python bench/gpu_bench.py --out DIR [--quick] [--parts env,detect,decode,peer,engine,auto,tensorrt]
                              [--budget-s 330]
                              [--batches 1,8,32,64]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from fractions import Fraction
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
VIDEO = ROOT / "sample_videos" / "square.mp4"
MODEL = ROOT / "models" / "yolo11n-pose.pt"
IMGSZ = 640
CONF, IOU = 0.35, 0.5
CAMERA_FPS = 25.0  # decode-bound capacity assumes 25 fps cameras (the engine decodes every frame)
DET_PER_CAMERA = 2.0  # the engine's detect_fps in bench/streams.py
PEER_STRIDE = 12  # 25 fps / 12 = 2.08 det/s, the peer's setting in bench/streams.py
ALL_PARTS = ("env", "detect", "decode", "peer", "engine", "auto", "tensorrt")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Run:
    """The results dict, the JSON file it is saved to after each part, and the time budget."""

    def __init__(self, out: Path, budget_s: float | None, quick: bool, batches: list[int] | None = None) -> None:
        self.out = out
        self.batches = batches or ([1, 8] if quick else [1, 8, 32, 64])
        self.started = time.monotonic()
        self.deadline = self.started + budget_s if budget_s else None
        self.quick = quick
        self.results: dict[str, Any] = {
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "quick": quick,
            "errors": {},
            "skipped": {},
        }
        self.frames: list[Any] = []
        self.clip_1080p: Path | None = None

    def left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def save(self) -> None:
        self.results["elapsed_s"] = round(time.monotonic() - self.started, 1)
        tmp = self.out / "gpu_bench.json.tmp"
        tmp.write_text(json.dumps(self.results, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, self.out / "gpu_bench.json")

    @contextlib.contextmanager
    def part(self, name: str, need_s: float = 0.0) -> Iterator[bool]:
        """Run a part: False (skipped) when the budget is short; any exception is recorded, not raised."""
        if self.left() < need_s:
            self.results["skipped"][name] = f"time budget: {self.left():.0f} s left, part needs ~{need_s:.0f} s"
            log(f"== {name}: SKIPPED ({self.results['skipped'][name]})")
            self.save()
            yield False
            return
        log(f"== {name} ({self.left():.0f} s of budget left)")
        t0 = time.monotonic()
        try:
            yield True
        except Exception as exc:
            self.results["errors"][name] = f"{type(exc).__name__}: {exc}"
            log(f"!! {name} failed: {type(exc).__name__}: {exc}")
            traceback.print_exc()
        finally:
            self.results.setdefault("part_seconds", {})[name] = round(time.monotonic() - t0, 1)
            self.save()


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def sh(cmd: list[str], timeout: float = 15.0) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"<{type(exc).__name__}: {exc}>"


def cuda_ok() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def start_all(
    target: Callable[[int], None], ready: list[threading.Event], limit_s: float
) -> tuple[list[threading.Thread], float]:
    """Start one daemon thread per event (``target(i)`` sets ``ready[i]``); wait up to ``limit_s`` for all of them.

    Returns the threads and the seconds it took until every one was ready (or the limit passed).
    """
    t0 = time.monotonic()
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(len(ready))]
    for thread in threads:
        thread.start()
    for event in ready:
        event.wait(timeout=max(0.1, limit_s - (time.monotonic() - t0)))
    return threads, time.monotonic() - t0


def join_all(threads: list[threading.Thread], limit_s: float) -> None:
    """Join the threads, all within ``limit_s`` together."""
    until = time.monotonic() + limit_s
    for thread in threads:
        thread.join(timeout=max(0.0, until - time.monotonic()))


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def gpu_util() -> str:
    """utilization.gpu, utilization.decoder (percent) right now, or '' without nvidia-smi."""
    return sh(["nvidia-smi", "--query-gpu=utilization.gpu,utilization.decoder", "--format=csv,noheader,nounits"], 5)


# ---------------------------------------------------------------- env


def part_env(run: Run) -> None:
    env: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform()}
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    env["cpu_model"] = cpu
    env["cpu_count"] = os.cpu_count()
    env["cpu_affinity"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
        env["mem_gib"] = round(kb / 2**20, 1)
    env["nvidia_smi"] = sh(
        [
            "nvidia-smi",
            "--query-gpu=name,driver_version,memory.total,clocks.max.sm,pcie.link.gen.max",
            "--format=csv,noheader",
        ]
    )
    env["nvidia_smi_header"] = "\n".join(sh(["nvidia-smi"]).splitlines()[:12])
    versions = {
        d: version(d)
        for d in (
            "torch",
            "torchvision",
            "ultralytics",
            "av",
            "opencv-python-headless",
            "opencv-python",
            "numpy",
            "onnxruntime",
            "onnxruntime-gpu",
            "onnx",
            "openvino",
            "tensorrt",
            "tensorrt-cu12",
            "tensorrt-cu13",
            "pydantic",
        )
    }
    env["versions"] = {k: v for k, v in versions.items() if v}
    env["missing"] = [k for k, v in versions.items() if v is None]
    try:
        import torch

        env["torch_cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        env["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            env["torch_device"] = {
                "name": p.name,
                "capability": f"{p.major}.{p.minor}",
                "sms": p.multi_processor_count,
                "mem_gib": round(p.total_memory / 2**30, 1),
            }
    except Exception as exc:
        env["torch_error"] = repr(exc)
    try:
        import av
        from av.codec.hwaccel import hwdevices_available

        env["pyav"] = {
            "version": av.__version__,
            "ffmpeg": getattr(av, "ffmpeg_version_info", "?"),
            "hwdevices_available": list(hwdevices_available()),
            "cuvid_decoders": sorted(c for c in av.codecs_available if c.endswith("_cuvid")),
            "nvenc_encoders": sorted(c for c in av.codecs_available if c.endswith("_nvenc")),
        }
    except Exception as exc:
        env["pyav_error"] = f"{type(exc).__name__}: {exc}"
    try:
        import cv2

        info = cv2.getBuildInformation()
        env["opencv"] = {
            "version": cv2.__version__,
            "ffmpeg": "FFMPEG:" in info and "YES" in info.split("FFMPEG:")[1][:40],
        }
    except Exception as exc:
        env["opencv_error"] = repr(exc)
    with contextlib.suppress(Exception):
        import onnxruntime

        env["onnxruntime_providers"] = onnxruntime.get_available_providers()
    try:
        from detectors.select import choose_backend

        choice = choose_backend("auto")
        env["auto_backend"] = {"backend": choice.backend, "reason": choice.reason}
    except Exception as exc:
        env["auto_backend_error"] = f"{type(exc).__name__}: {exc}"
    run.results["env"] = env
    log(json.dumps(env, indent=1, default=str)[:4000])


# ---------------------------------------------------------------- media


def load_frames(count: int = 64, step: int = 10) -> list[Any]:
    """``count`` BGR frames of square.mp4 (every ``step``-th), via PyAV or else OpenCV."""
    import numpy as np

    frames: list[Any] = []
    try:
        import av

        with av.open(str(VIDEO)) as c:
            for i, f in enumerate(c.decode(video=0)):
                if i % step == 0:
                    frames.append(np.ascontiguousarray(f.to_ndarray(format="bgr24")))
                    if len(frames) >= count:
                        break
    except ImportError:
        import cv2

        cap = cv2.VideoCapture(str(VIDEO))
        i = 0
        while len(frames) < count:
            ok, img = cap.read()
            if not ok:
                break
            if i % step == 0:
                frames.append(img)
            i += 1
        cap.release()
    return frames


def make_1080p(path: Path, count: int) -> Path:
    """A 1920x1080 25 fps H.264 clip (libx264 veryfast, main, no B-frames, GOP 50, 4 Mb/s) from square.mp4."""
    import av

    t0 = time.monotonic()
    with av.open(str(VIDEO)) as src, av.open(str(path), "w", format="mp4") as dst:
        st = dst.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = 1920, 1080, "yuv420p"
        st.bit_rate = 4_000_000
        st.codec_context.options = {
            "preset": "veryfast",
            "profile": "main",
            "x264-params": "bframes=0:keyint=50:min-keyint=50:scenecut=0",
        }
        n = 0
        while n < count:
            for frame in src.decode(video=0):
                f = frame.reformat(width=1920, height=1080, format="yuv420p")
                f.pts, f.time_base = n, Fraction(1, 25)
                for p in st.encode(f):
                    dst.mux(p)
                n += 1
                if n >= count:
                    break
            src.seek(0)
        for p in st.encode():
            dst.mux(p)
    log(f"made {path} ({count} frames, {path.stat().st_size / 1e6:.1f} MB) in {time.monotonic() - t0:.1f} s")
    return path


# ---------------------------------------------------------------- detection timing


def time_calls(fn: Callable[[], Any], min_calls: int, min_s: float, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call after ``warmup`` calls, at least ``min_calls`` calls and ``min_s`` seconds."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    c0, w0 = cpu_seconds(), time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - w0 < min_s:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 2000:
            break
    wall = time.perf_counter() - w0
    return {"median_s": statistics.median(times), "calls": len(times), "cpu_cores": (cpu_seconds() - c0) / wall}


def batch_rows(
    label: str, fn_for: Callable[[int], Callable[[], Any]], batches: list[int], run: Run
) -> list[dict[str, Any]]:
    rows = []
    for b in batches:
        if run.left() < 8:
            rows.append({"variant": label, "batch": b, "skipped": "time budget"})
            continue
        try:
            t = time_calls(fn_for(b), min_calls=5 if b < 32 else 3, min_s=0.6 if run.quick else 1.5)
            row = {
                "variant": label,
                "batch": b,
                "ms_per_call": round(t["median_s"] * 1e3, 2),
                "ms_per_frame": round(t["median_s"] * 1e3 / b, 3),
                "frames_per_s": round(b / t["median_s"], 1),
                "calls": t["calls"],
                "cpu_cores": round(t["cpu_cores"], 2),
            }
        except Exception as exc:
            row = {"variant": label, "batch": b, "error": f"{type(exc).__name__}: {exc}"}
        log(f"   {row}")
        rows.append(row)
    return rows


def sync() -> None:
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


def part_detect(run: Run) -> None:
    from ultralytics import YOLO

    cuda = cuda_ok()
    device: Any = 0 if cuda else "cpu"
    batches = run.batches
    frames = run.frames
    out: dict[str, Any] = {
        "device": "cuda:0" if cuda else "cpu",
        "imgsz": IMGSZ,
        "frames": f"{len(frames)} of square.mp4 768x576",
        "rows": [],
    }
    run.results["detect"] = out
    people: dict[str, float] = {}

    # 1. Ultralytics predict on a list of frames, fp16: batch 1 = the peer's per-frame call, >1 = engine-style batching.
    model = YOLO(str(MODEL))

    def ultra(b: int) -> Callable[[], Any]:
        batch = frames[:b]

        def call() -> Any:
            res = model.predict(
                batch, imgsz=IMGSZ, half=cuda, device=device, conf=CONF, iou=IOU, classes=[0], verbose=False
            )
            return [r.boxes.xyxy.cpu() for r in res]

        return call

    with contextlib.suppress(Exception):
        res = ultra(len(frames))()
        people["ultralytics_fp16"] = sum(len(r) for r in res) / len(frames)
    out["rows"] += batch_rows("ultralytics_fp16" if cuda else "ultralytics_fp32_cpu", ultra, batches, run)
    run.save()

    # 2. The project's own torch detector (what backend "torch", and "auto" without tensorrt, runs on a GPU box):
    #    precision auto (fp16 on CUDA) and fp32 (its only mode before the precision setting), same run.
    from detectors.config import DetectorConfig, Precision
    from detectors.yolo import UltralyticsDetector

    precisions: list[Precision] = ["auto", "fp32"] if cuda else ["auto"]
    for precision in precisions:
        try:
            det = UltralyticsDetector(
                DetectorConfig(
                    imgsz=IMGSZ, max_batch=64, device="cuda:0" if cuda else "cpu", backend="torch", precision=precision
                ),
                MODEL,
            )
            label = "project_torch_" + ("fp16" if "precision=fp16" in det.describe() else "fp32")
            out.setdefault("project_describe", {})[label] = det.describe()
            people[label] = sum(len(d.xyxy) for d in det.detect(frames)) / len(frames)
            out["rows"] += batch_rows(label, lambda b, det=det: lambda: det.detect(frames[:b]), batches, run)
        except Exception as exc:
            out[f"project_torch_{precision}_error"] = f"{type(exc).__name__}: {exc}"
            log(f"!! project detector ({precision}): {out[f'project_torch_{precision}_error']}")
        run.save()

    # 3. Raw fused module on a GPU tensor: the ceiling without Ultralytics' pre/post-processing.
    try:
        import torch

        net = YOLO(str(MODEL)).model.fuse().to("cuda:0" if cuda else "cpu").eval()
        dtype = torch.float16 if cuda else torch.float32
        if cuda:
            net = net.half()

        def raw(b: int) -> Callable[[], Any]:
            x = torch.rand(b, 3, 480, 640, device="cuda:0" if cuda else "cpu", dtype=dtype)

            def call() -> None:
                with torch.inference_mode():
                    net(x)
                sync()

            return call

        out["rows"] += batch_rows("raw_forward_fp16" if cuda else "raw_forward_fp32_cpu", raw, batches, run)
        if cuda:
            out["max_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    except Exception as exc:
        out["raw_error"] = f"{type(exc).__name__}: {exc}"
    out["people_per_frame"] = people


# ---------------------------------------------------------------- decoding


def decode_trial(path: Path, mode: str, streams: int, window_s: float) -> dict[str, Any]:
    """``streams`` threads each decoding ``path`` in a loop; frames/s over ``window_s`` once all have started."""
    import av

    counts = [0] * streams
    started = [threading.Event() for _ in range(streams)]
    stop = threading.Event()
    errors: list[str] = []
    info: dict[str, Any] = {}

    def worker(i: int) -> None:
        try:
            kwargs: dict[str, Any] = {}
            if mode in ("nvdec", "nvdec_gpu_frames"):
                from av.codec.hwaccel import HWAccel

                kwargs["hwaccel"] = HWAccel(
                    "cuda", allow_software_fallback=False, is_hw_owned=mode == "nvdec_gpu_frames"
                )
            with av.open(str(path), **kwargs) as c:
                s = c.streams.video[0]
                ctx = s.codec_context
                if mode == "cpu":
                    s.thread_type, s.thread_count = "NONE", 1  # the engine's ingest setting up to 1920x1088
                elif mode == "cuvid":
                    ctx = av.CodecContext.create(f"{s.codec_context.name}_cuvid", "r")
                    ctx.extradata = s.codec_context.extradata
                while not stop.is_set():
                    for packet in c.demux(s):
                        if packet.size == 0:
                            continue
                        for frame in ctx.decode(packet):
                            counts[i] += 1
                            if not started[i].is_set():
                                if i == 0:
                                    info["frame_format"] = frame.format.name
                                    info["is_hwaccel"] = bool(getattr(ctx, "is_hwaccel", False))
                                    info["decoder"] = ctx.name
                                started[i].set()
                        if stop.is_set():
                            break
                    c.seek(0)
                    ctx.flush_buffers()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            started[i].set()

    threads, open_s = start_all(worker, started, limit_s=30)
    time.sleep(0.3)
    c0, n0, w0 = cpu_seconds(), sum(counts), time.perf_counter()
    time.sleep(window_s / 2)
    util = gpu_util()
    time.sleep(window_s / 2)
    n1, wall, cpu = sum(counts), time.perf_counter() - w0, cpu_seconds() - c0
    stop.set()
    join_all(threads, 10)
    fps = (n1 - n0) / wall
    row = {
        "file": path.name,
        "mode": mode,
        "streams": streams,
        "frames_per_s": round(fps, 1),
        "per_stream_fps": round(fps / streams, 1),
        "cpu_cores": round(cpu / wall, 2),
        "cameras_25fps": round(fps / CAMERA_FPS, 1),
        "start_s": round(open_s, 2),
        "gpu_util_and_decoder_util_pct": util,
        **info,
    }
    if errors:
        row["errors"] = sorted(set(errors))[:3]
        row["failed_streams"] = len(errors)
    log(f"   {row}")
    return row


def part_decode(run: Run) -> None:
    import av  # noqa: F401  (fail the part clearly when PyAV is missing)

    out: dict[str, Any] = {"rows": [], "window_s": 1.5 if run.quick else 3.0}
    run.results["decode"] = out
    cuda = cuda_ok()
    files = [VIDEO] + ([run.clip_1080p] if run.clip_1080p else [])
    plan: list[tuple[Path, str, int]] = []
    for f in files:
        big = f == run.clip_1080p
        counts = [1, 8, 32] if big else [1, 32]
        if run.quick:
            counts = [1, 4]
        plan += [(f, "cpu", n) for n in counts]
        if cuda:
            plan += [(f, "nvdec", n) for n in counts]
            if big:
                plan += [(f, "nvdec_gpu_frames", counts[-1]), (f, "cuvid", 1), (f, "cuvid", counts[-1])]
    if not cuda:
        out["note"] = "no CUDA device: NVDEC modes not tried"
        plan += [(VIDEO, "nvdec", 1)]  # shows the error PyAV gives without a GPU
    for f, mode, n in plan:
        if run.left() < out["window_s"] + 10:
            out["rows"].append({"file": f.name, "mode": mode, "streams": n, "skipped": "time budget"})
            continue
        try:
            out["rows"].append(decode_trial(f, mode, n, out["window_s"]))
        except Exception as exc:
            out["rows"].append({"file": f.name, "mode": mode, "streams": n, "error": f"{type(exc).__name__}: {exc}"})
        run.save()


# ---------------------------------------------------------------- peer


def peer_trial(source: Path, k: int, window_s: float, settle_s: float, warm: Any) -> dict[str, Any]:
    """K threads, each its own YOLO running predict(source, stream=True, vid_stride=12) in a loop."""
    from ultralytics import YOLO

    cuda = cuda_ok()
    device: Any = 0 if cuda else "cpu"
    stamps: list[list[float]] = [[] for _ in range(k)]
    stop = threading.Event()
    load_lock = threading.Lock()
    ready = [threading.Event() for _ in range(k)]
    errors: list[str] = []

    def camera(i: int) -> None:
        try:
            with load_lock:  # model load + predictor setup one at a time (Ultralytics' setup is not thread-safe)
                model = YOLO(str(MODEL))
                model.predict([warm], imgsz=IMGSZ, half=cuda, device=device, classes=[0], verbose=False)
            while not stop.is_set():
                gen = model.predict(
                    source=str(source),
                    stream=True,
                    vid_stride=PEER_STRIDE,
                    imgsz=IMGSZ,
                    half=cuda,
                    device=device,
                    conf=CONF,
                    iou=IOU,
                    classes=[0],
                    verbose=False,
                )
                for r in gen:
                    r.boxes.xyxy.cpu()
                    stamps[i].append(time.perf_counter())
                    ready[i].set()
                    if stop.is_set():
                        break
                gen.close()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            ready[i].set()

    threads, start_s = start_all(camera, ready, limit_s=60)
    time.sleep(settle_s)
    c0, w0 = cpu_seconds(), time.perf_counter()
    time.sleep(window_s / 2)
    util = gpu_util()
    time.sleep(window_s / 2)
    w1, cpu = time.perf_counter(), cpu_seconds() - c0
    stop.set()
    join_all(threads, 15)
    per_cam = [sum(1 for s in st if w0 <= s < w1) / (w1 - w0) for st in stamps]
    total = sum(per_cam)
    row = {
        "source": source.name,
        "cameras": k,
        "vid_stride": PEER_STRIDE,
        "det_per_s_total": round(total, 1),
        "det_per_s_per_camera_min": round(min(per_cam), 2),
        "det_per_s_per_camera_median": round(statistics.median(per_cam), 2),
        "ms_per_det": round(1e3 / total, 2) if total else None,
        "cpu_cores": round(cpu / (w1 - w0), 2),
        "cameras_at_2_08_det_s": round(total / (25 / PEER_STRIDE), 1),
        "start_s": round(start_s, 1),
        "gpu_util_and_decoder_util_pct": util,
    }
    if errors:
        row["errors"] = sorted(set(errors))[:3]
    log(f"   {row}")
    return row


def part_peer(run: Run) -> None:
    out: dict[str, Any] = {
        "rows": [],
        "what": "K threads x own YOLO(pt).predict(source=file, stream=True, half, vid_stride=12)",
    }
    run.results["peer"] = out
    source = run.clip_1080p or VIDEO
    ks = [1, 4] if run.quick else [1, 8, 24]
    window, settle = (3.0, 1.0) if run.quick else (6.0, 2.0)
    for k in ks:
        need = window + settle + 0.5 * k + 5
        if run.left() < need:
            out["rows"].append({"cameras": k, "skipped": "time budget"})
            continue
        try:
            out["rows"].append(peer_trial(source, k, window, settle, run.frames[0]))
        except Exception as exc:
            out["rows"].append({"cameras": k, "error": f"{type(exc).__name__}: {exc}"})
        run.save()


# ---------------------------------------------------------------- engine end to end


def engine_trial(source: Path, k: int, hwaccel: str, window_s: float, settle_s: float) -> dict[str, Any]:
    """K file cameras through the engine's own workers and detection loop (bench/streams.py's run_engine)."""
    from bench.streams import DROP_LIMIT, run_engine

    figures = run_engine([{"main": str(source)}] * k, window_s, IMGSZ, {}, hwaccel, settle_s)
    keys = ("dropped_frac", "cpu_cores_used", "cpu_s_per_camera_s", "decode_share", "latency_ms_p50", "detector")
    row = {"cameras": k, "hwaccel": hwaccel, **{key: figures.get(key) for key in keys}}
    row["decoders"], row["held"] = figures.get("decoders"), figures["dropped_frac"] < DROP_LIMIT
    row["gpu_util_and_decoder_util_pct"] = gpu_util()
    shown = {k: v for k, v in row.items() if k != "detector"}  # the detector's description is long: JSON only
    log(f"   {shown}")
    return row


def part_engine(run: Run) -> None:
    out: dict[str, Any] = {
        "what": "run_engine (StreamWorker per camera + Engine.detect_once, auto detector) on K looping 1080p25 "
        "files at 2 det/s; held = < 5 % of detections missing",
        "rows": [],
        "held": {},
    }
    run.results["engine"] = out
    source = run.clip_1080p or VIDEO
    window, settle = (4.0, 2.0) if run.quick else (8.0, 3.0)
    first, ceiling = (2, 8) if run.quick else (16, 256)
    for hwaccel in ("none", "cuda"):
        held, lost, k, bisected = 0, 0, first, False
        while k and run.left() > window + settle + 30 + 0.1 * k:  # start-up: model, workers (~0.1 s each)
            try:
                row = engine_trial(source, k, hwaccel, window, settle)
            except Exception as exc:
                out["rows"].append({"cameras": k, "hwaccel": hwaccel, "error": f"{type(exc).__name__}: {exc}"})
                break
            out["rows"].append(row)
            run.save()
            held, lost = (k, lost) if row["held"] else (held, k)
            if not lost:
                k = k * 2 if k * 2 <= ceiling else 0  # doubling until a K is lost
            elif not bisected and held < (mid := (held + lost) // 2) != k:
                k, bisected = mid, True  # one more trial between the last held and the first lost
            else:
                k = 0
        out["held"][hwaccel] = {"held": held, "first_lost": lost or None}
        log(f"   engine hwaccel={hwaccel}: held {held}, first lost {lost or '-'}")


# ---------------------------------------------------------------- auto / tensorrt


def part_auto(run: Run) -> None:
    from detectors import DetectorConfig, create_detector

    t0 = time.monotonic()
    det = create_detector(DetectorConfig(model=str(MODEL), imgsz=IMGSZ, max_batch=64))
    out: dict[str, Any] = {"describe": det.describe(), "build_s": round(time.monotonic() - t0, 1)}
    run.results["auto"] = out
    log(f"   auto -> {out['describe']} ({out['build_s']} s)")
    frames = run.frames
    batches = run.batches
    out["people_per_frame"] = sum(len(d.xyxy) for d in det.detect(frames)) / len(frames)
    out["rows"] = batch_rows("auto:" + type(det).__name__, lambda b: lambda: det.detect(frames[:b]), batches, run)


def part_tensorrt(run: Run) -> None:
    out: dict[str, Any] = {}
    run.results["tensorrt"] = out
    if importlib.util.find_spec("tensorrt") is None:
        out["status"] = (
            "not measured: the tensorrt Python package is not installed here. bench/gpu.sh installs it with pip "
            "when the machine is online (tensorrt-cu<N> for torch's CUDA major); its wheels (~GBs of libraries) "
            "cannot travel to an offline machine under a 64 MiB limit."
        )
        log(f"   {out['status']}")
        return
    if not cuda_ok():
        out["status"] = "not measured: tensorrt is installed but torch sees no CUDA device"
        return
    import tensorrt

    out["tensorrt_version"] = tensorrt.__version__
    from detectors.backends import build_backend
    from detectors.config import DetectorConfig
    from detectors.select import choose_backend

    cfg = DetectorConfig(model=str(MODEL), imgsz=IMGSZ, max_batch=64, backend="tensorrt", device="cuda:0")
    t0 = time.monotonic()
    det = build_backend(cfg, MODEL, choose_backend("tensorrt"))  # exports (cached) through detectors.export
    out["build_s"] = round(time.monotonic() - t0, 1)
    out["describe"] = det.describe()
    log(f"   tensorrt fp16 -> {out['describe']} (built in {out['build_s']} s)")
    frames = run.frames
    batches = run.batches
    out["people_per_frame"] = sum(len(d.xyxy) for d in det.detect(frames)) / len(frames)
    out["rows"] = batch_rows("tensorrt_fp16_project", lambda b: lambda: det.detect(frames[:b]), batches, run)
    run.save()
    data = os.environ.get("GPU_BENCH_INT8_DATA")
    if not data:
        out["int8"] = (
            "not measured: no calibration data (set GPU_BENCH_INT8_DATA to a dataset yaml; "
            "the project's export has no INT8 setting)"
        )
        return
    from ultralytics import YOLO

    t0 = time.monotonic()
    path = YOLO(str(MODEL)).export(
        format="engine", int8=True, data=data, dynamic=True, batch=64, imgsz=IMGSZ, device=0, verbose=False
    )
    out["int8_build_s"] = round(time.monotonic() - t0, 1)
    model = YOLO(str(path), task="pose")

    def int8(b: int) -> Callable[[], Any]:
        return lambda: [
            r.boxes.xyxy.cpu()
            for r in model.predict(frames[:b], imgsz=IMGSZ, device=0, conf=CONF, iou=IOU, classes=[0], verbose=False)
        ]

    out["int8_rows"] = batch_rows("tensorrt_int8_ultralytics", int8, batches, run)


# ---------------------------------------------------------------- summary


def summarize(run: Run) -> None:
    r = run.results
    s: dict[str, Any] = {"assumptions": "cameras are 25 fps, detected at 2 det/s (peer: vid_stride 12 = 2.08 det/s)"}
    best: dict[str, float] = {}
    for part in ("detect", "auto", "tensorrt"):
        for row in (r.get(part) or {}).get("rows", []):
            if "frames_per_s" in row:
                best[row["variant"]] = max(best.get(row["variant"], 0.0), row["frames_per_s"])
    s["detect_bound_cameras"] = {k: round(v / DET_PER_CAMERA) for k, v in best.items()}
    s["best_frames_per_s"] = best
    peer = [row for row in (r.get("peer") or {}).get("rows", []) if "det_per_s_total" in row]
    if peer:
        top = max(peer, key=lambda x: x["det_per_s_total"])
        s["peer_cameras_held"] = {
            "cameras": top["cameras_at_2_08_det_s"],
            "at_threads": top["cameras"],
            "det_per_s": top["det_per_s_total"],
        }
    engine = (r.get("engine") or {}).get("held")
    if engine:
        s["engine_cameras_held_measured"] = engine  # end to end, by hwaccel setting (1080p25 file cameras)
    dec: dict[str, float] = {}
    for row in (r.get("decode") or {}).get("rows", []):
        if "frames_per_s" in row and not row.get("failed_streams"):
            key = f"{row['file']}:{row['mode']}"
            dec[key] = max(dec.get(key, 0.0), row["frames_per_s"])
    s["decode_bound_cameras_25fps"] = {k: round(v / CAMERA_FPS) for k, v in dec.items()}
    det_best = max((v for k, v in best.items() if not k.startswith("raw")), default=0.0)
    if det_best and dec:
        s["engine_estimate_cameras"] = {
            k: min(round(det_best / DET_PER_CAMERA), round(v / CAMERA_FPS)) for k, v in dec.items()
        }
        s["engine_estimate_note"] = (
            "min(detection-bound with the best measured detector, decode-bound per file/mode); measured apart, "
            "so CPU decoding and the detector's CPU side compete in reality (see cpu_cores per row)"
        )
    r["summary"] = s
    log("summary: " + json.dumps(s, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "/tmp/gpu-bench-out"))
    ap.add_argument("--quick", action="store_true", help="small batches/streams, short windows (a CPU dry run)")
    ap.add_argument("--parts", default=",".join(ALL_PARTS))
    ap.add_argument("--budget-s", type=float, default=None, help="skip what would not finish within this many seconds")
    ap.add_argument("--batches", default=None, help="detector batch sizes, e.g. 1,8,32 (default 1,8,32,64)")
    ap.add_argument("--clip-frames", type=int, default=300, help="frames in the generated 1080p clip (25 fps)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    batches = [int(b) for b in args.batches.split(",")] if args.batches else None
    run = Run(args.out, args.budget_s, args.quick, batches)
    run.results["parts"] = parts
    run.results["model"] = str(MODEL.relative_to(ROOT)) if MODEL.exists() else f"MISSING {MODEL}"
    if "env" in parts:
        with run.part("env") as go:
            if go:
                part_env(run)
    with run.part("media") as go:
        if go:
            run.frames = load_frames()
            run.results["media"] = {"frames": len(run.frames), "shape": list(run.frames[0].shape)}
            if {"decode", "peer", "engine"} & set(parts):
                n = 60 if args.quick else args.clip_frames
                run.clip_1080p = make_1080p(Path(tempfile.gettempdir()) / "gpu_bench_1080p.mp4", n)
                run.results["media"]["clip_1080p"] = {"frames": n, "mb": round(run.clip_1080p.stat().st_size / 1e6, 2)}
    if "detect" in parts:
        with run.part("detect", need_s=20) as go:
            if go:
                part_detect(run)
    if "decode" in parts:
        with run.part("decode", need_s=15) as go:
            if go:
                part_decode(run)
    if "peer" in parts:
        with run.part("peer", need_s=20) as go:
            if go:
                part_peer(run)
    if "engine" in parts:
        with run.part("engine", need_s=60) as go:
            if go:
                part_engine(run)
    if "tensorrt" in parts:
        with run.part("tensorrt", need_s=10) as go:
            if go:
                part_tensorrt(run)
    if "auto" in parts:
        with run.part("auto", need_s=25) as go:
            if go:
                part_auto(run)
    with run.part("summary") as go:
        if go:
            summarize(run)
    log(f"done in {time.monotonic() - run.started:.0f} s -> {args.out / 'gpu_bench.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
