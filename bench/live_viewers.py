"""Benchmark: CPU of the web process per live viewer (#16), 1080p H.264 from a real RTSP server on loopback.

Not a test. Makes a 1080p25 H.264 camera stream (GOP 2 s, ~4 Mbit/s) from sample_videos/square.mp4 with ffmpeg
once, in a temporary directory (nothing is committed), serves it with tests/support/rtsp_loop_server.py, runs the
web app (``monitor.web``) in a child process on its own redis-server, and connects 0, 1 and 4 viewers as plain
WebSocket clients (cookie + Origin, as the page does) from this process. For each count it reads the child's CPU
time (utime+stime from /proc) over the same window: 1 viewer minus 0 is the camera's shared demux+remux plus one
viewer, (4 - 1) / 3 is what each further viewer adds (the WebSocket sends; nothing is decoded).

``--engine-worker`` runs the camera's stream worker in the web process as ``monitor run`` has it (record-only: it
demuxes and buffers, decodes nothing), twice: once with the live feed opening the camera itself (``own``, how it
was before), once taking the worker's packets (``tapped``, what ``monitor run`` does now). The camera's open
sessions are counted on its side while one viewer watches.

    PYTHONPATH=. .venv/bin/python bench/live_viewers.py [--seconds 20] [--engine-worker]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.processes import free_port, stop  # noqa: E402
from tests.support.rtsp import RtspCamera  # noqa: E402

PASSWORD = "bench-viewer-pass-1"
SERVE = """
import sys, time
import redis
from monitor.config import load_config
from monitor.web.app import create_app
from monitor.web.auth import Auth
from monitor.web.server import WebServer
from monitor.ingest.worker import Source, StreamWorker
client = redis.Redis.from_url(sys.argv[1])
Auth(client).add_user("bench", "viewer", sys.argv[4])
loaded, mode = load_config(sys.argv[2]), sys.argv[5]
local = None
if mode != "none":  # the engine's record worker of camera "main" in this process
    worker = StreamWorker("main", Source(loaded.config.cameras["main"].url, is_file=False), None, 10.0)
    worker.start()
    if mode == "tapped":
        local = lambda camera, source: worker.taps if source == worker.source else None
server = WebServer(create_app(client, loaded, local_packets=local), port=int(sys.argv[3])).start()
print("READY", flush=True)
while True:
    time.sleep(3600)
"""


def make_1080p(out: Path) -> Path:
    """20 s of the sample video scaled to 1920x1080 at 25 fps, as a camera main stream would send it."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-t", "20", "-i", str(ROOT / "sample_videos/square.mp4"),
                    "-an", "-vf", "scale=1920:1080", "-r", "25", "-c:v", "libx264", "-preset", "veryfast",
                    "-profile:v", "high", "-b:v", "4M", "-maxrate", "4M", "-bufsize", "8M", "-g", "50",
                    "-keyint_min", "50", "-sc_threshold", "0", "-bf", "0", str(out)], check=True)  # fmt: skip
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Viewer(threading.Thread):
    """A WebSocket client that reads and discards the stream, counting frames."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = url, headers
        self.frames = 0
        self.bytes = 0
        self.done = threading.Event()

    def run(self) -> None:
        with connect(self.url, additional_headers=self.headers, max_size=None, open_timeout=20) as ws:
            while not self.done.is_set():
                try:
                    message = ws.recv(timeout=0.5)
                except TimeoutError:
                    continue
                if isinstance(message, bytes):
                    self.frames += 1
                    self.bytes += len(message)


def measure(
    pid: int, url: str, headers: dict[str, str], viewers: int, seconds: float, camera: RtspCamera
) -> dict[str, float]:
    """CPU share of one core used by the web process with ``viewers`` connected (after a 3 s settle)."""
    clients = [Viewer(url, headers) for _ in range(viewers)]
    for c in clients:
        c.start()
    time.sleep(3 + 2 * bool(viewers))
    frames0 = sum(c.frames for c in clients)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    sessions = 0  # the most the camera had open at once, looked at every second of the window
    while time.monotonic() < t0 + seconds:
        time.sleep(min(1.0, max(0.0, t0 + seconds - time.monotonic())))
        sessions = max(sessions, camera.sessions())
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    fps = (sum(c.frames for c in clients) - frames0) / (t1 - t0) / max(viewers, 1)
    for c in clients:
        c.done.set()
    for c in clients:
        c.join(5)
    time.sleep(2)  # the feed stops after the last viewer left
    return {"viewers": viewers, "cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0), "fps_per_viewer": fps, "sessions": sessions}


def run_mode(tmp: Path, camera: RtspCamera, redis_url: str, mode: str, seconds: float) -> list[dict[str, float]]:
    """0, 1 and 4 viewers on a fresh web process; ``mode``: none (web alone), own or tapped (see the docstring)."""
    config = tmp / "streams.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp / "data"), "cameras": {"main": {"url": camera.url("main")}}}))
    port = free_port()
    web = subprocess.Popen([sys.executable, "-c", SERVE, redis_url, str(config), str(port), PASSWORD, mode],
                           cwd=ROOT, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert web.stdout is not None and web.stdout.readline().startswith("READY")
        base = f"http://127.0.0.1:{port}"
        cookie = httpx.post(f"{base}/auth/login", json={"username": "bench", "password": PASSWORD}).cookies
        headers = {"Origin": base, "Cookie": "; ".join(f"{k}={v}" for k, v in cookie.items())}
        url = f"ws://127.0.0.1:{port}/api/cameras/main/live"
        return [measure(web.pid, url, headers, n, seconds, camera) for n in (0, 1, 4)]
    finally:
        stop(web)


def report(mode: str, rows: list[dict[str, float]]) -> None:
    cpu = {int(r["viewers"]): r["cpu_pct"] for r in rows}
    print(f"\n{mode}:\n| viewers | web process CPU (% of one core) | frames/s per viewer | camera sessions (most) |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['viewers']:.0f} | {r['cpu_pct']:.2f} | {r['fps_per_viewer']:.1f} | {r['sessions']:.0f} |")
    print(
        f"feed + first viewer: {cpu[1] - cpu[0]:.2f} % of one core; each further viewer: {(cpu[4] - cpu[1]) / 3:.2f} %"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring window per viewer count")
    ap.add_argument("--engine-worker", action="store_true", help="own vs tapped feed beside the engine's worker")
    args = ap.parse_args()
    modes = ("own", "tapped") if args.engine_worker else ("none",)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        print("making the 1080p camera stream (ffmpeg, once)…", flush=True)
        camera = RtspCamera({"main": make_1080p(tmp / "cam1080.mp4")}).start()
        redis_port = free_port()
        redis_proc = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", str(tmp)], stdout=subprocess.DEVNULL)  # fmt: skip
        time.sleep(0.5)
        try:
            results = {mode: run_mode(tmp, camera, f"redis://127.0.0.1:{redis_port}/0", mode, args.seconds)
                       for mode in modes}  # fmt: skip
        finally:
            stop(redis_proc)
            camera.close()
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    print(f"\nCPU: {model}, {os.cpu_count()} CPUs; Python {platform.python_version()}; 1080p25 H.264 4 Mbit/s, GOP 2 s")
    for mode, rows in results.items():
        report(mode, rows)


if __name__ == "__main__":
    if shutil.which("ffmpeg") is None:
        sys.exit("needs ffmpeg")
    main()
