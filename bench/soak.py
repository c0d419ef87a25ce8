"""Benchmark: the whole engine for a long run with faults, watching for drift (memory, descriptors, threads).

Not a test. ``monitor run`` (real process, embedded Redis, web page on a free port) runs K file cameras of the
gathering scenario (tests/support/engine_process.py: 17 s quiet, 11 s crowd, looping) with a rule that closes
between crowds, so every camera opens an incident about every 28 s: a snapshot, a clip, an RTP announcement
(received by a real socket), Redis and the outbox, over and over. Every ``--fault-every`` seconds a fault, in
turn: the embedded redis-server is SIGKILLed (its keeper starts it again), or frozen with SIGSTOP for 10 s. A
client asks /healthz every 2 s throughout. Every 10 s the engine's RSS, open descriptors, threads and CPU are
sampled.

At the end: RSS growth over the second half (MB per hour, least squares), descriptors and threads at the start of
the second half and at the end, incidents recorded vs announcements the horn heard (none lost, none doubled),
changes left in the outbox, and /healthz answers.

    PYTHONPATH=. python bench/soak.py --minutes 30 --cameras 4 --json /tmp/soak.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

from bench.machine import header
from monitor.store.embedded import EmbeddedRedis
from monitor.store.incidents import IncidentStore
from monitor.store.outbox import OUTBOX_NAME, read_waiting
from tests.support.engine_process import gathering_scenario, start_engine
from tests.support.processes import free_port, stop
from tests.support.redis_server import servers
from tests.support.rtp_listener import RtpListener

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_S = 10.0
FREEZE_S = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def config(workdir: Path, cameras: int, horn_port: int, web_port: int) -> dict[str, Any]:
    """The gathering scenario, K cameras each with its own rule, closing between crowds (an incident a loop)."""
    base = gathering_scenario(ROOT, workdir, horn_port)
    [camera] = base["cameras"].values()
    [rule] = base["rules"]
    base["cameras"] = {f"plaza{i}": camera for i in range(cameras)}
    base["rules"] = [{**rule, "camera": f"plaza{i}", "clear_s": 5, "cooldown_s": 0} for i in range(cameras)]
    base["web"] = {"port": web_port}
    base["status_interval_s"] = 5
    return base


def sample(pid: int) -> dict[str, float]:
    """RSS (MB), open descriptors, threads and CPU seconds of the process ``pid`` (children not included)."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {
        "t": time.monotonic(),
        "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(status["Threads"]),
        "cpu_s": (int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
    }


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per hour."""
    if len(points) < 3:
        return float("nan")
    return float(statistics.linear_regression([t for t, _ in points], [v for _, v in points]).slope * 3600)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--fault-every", type=float, default=120.0, help="seconds between Redis faults (0: none)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="vm-soak-"))
    horn = RtpListener()
    web_port = free_port()
    cfg = workdir / "streams.yaml"
    cfg.write_text(yaml.safe_dump(config(workdir, args.cameras, horn.port, web_port)), encoding="utf-8")
    redis_dir = (workdir / "data" / "redis").resolve()
    duration = args.minutes * 60
    log_path = workdir / "engine.log"
    print(header(), flush=True)
    print(f"soak: {args.cameras} cameras, {args.minutes:g} min, a Redis fault every {args.fault_every:g} s; {workdir}")
    engine = start_engine(cfg, log_path, "--duration", str(duration))
    health: dict[str, int] = {}
    stop_polling = threading.Event()

    def poll_health() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{web_port}", timeout=5) as http:
            while not stop_polling.wait(2.0):
                try:
                    key = str(http.get("/healthz").status_code)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                health[key] = health.get(key, 0) + 1

    poller = threading.Thread(target=poll_health, daemon=True)
    poller.start()
    samples: list[dict[str, float]] = []
    faults: list[str] = []
    began = time.monotonic()
    next_sample, next_fault, kill_next = began, began + args.fault_every, True
    try:
        while engine.poll() is None:
            now = time.monotonic()
            if now >= next_sample:
                with contextlib.suppress(OSError, KeyError):  # the engine may have just exited
                    samples.append(sample(engine.pid))
                if samples and len(samples) % 6 == 1:
                    s = samples[-1]
                    print(
                        f"  {(now - began) / 60:5.1f} min: rss {s['rss_mb']:.0f} MB, fds {s['fds']:.0f}, "
                        f"threads {s['threads']:.0f}, horn {horn.announcements}, faults {len(faults)}",
                        flush=True,
                    )
                next_sample += SAMPLE_S
            if args.fault_every and now >= next_fault and now - began < duration - 60:
                pids = servers(redis_dir)
                if pids:
                    if kill_next:
                        os.kill(pids[0], signal.SIGKILL)
                        faults.append(f"{now - began:.0f} s: SIGKILL redis-server {pids[0]}")
                    else:
                        os.kill(pids[0], signal.SIGSTOP)
                        time.sleep(FREEZE_S)
                        os.kill(pids[0], signal.SIGCONT)
                        faults.append(f"{now - began:.0f} s: SIGSTOP redis-server {pids[0]} for {FREEZE_S:g} s")
                    kill_next = not kill_next
                next_fault += args.fault_every
            time.sleep(0.5)
        rc = engine.wait()
    finally:
        stop(engine)
        stop_polling.set()
        poller.join(10)
        horn.close()
    embedded = EmbeddedRedis(workdir / "data")
    try:
        records = list(IncidentStore(redis.Redis.from_url(embedded.start())).list(limit=100_000))
    finally:
        embedded.stop()
    waiting, _ = read_waiting(workdir / "data" / OUTBOX_NAME)
    ids = [r["id"] for r in records]
    played = sum(1 for r in records for a in r.get("announcements", []) if a.get("ok"))
    half = [s for s in samples if s["t"] - began >= duration / 2]
    result: dict[str, Any] = {
        "header": header(),
        "minutes": args.minutes,
        "cameras": args.cameras,
        "exit_code": rc,
        "faults": faults,
        "incidents": len(records),
        "duplicate_ids": len(ids) - len(set(ids)),
        "announcements_recorded_ok": played,
        "announcements_heard": horn.announcements,
        "incidents_without_clip": sum(1 for r in records if not r.get("clip")),
        "outbox_left": len(waiting),
        "healthz": health,
        "rss_mb_start_end": [round(samples[0]["rss_mb"], 1), round(samples[-1]["rss_mb"], 1)] if samples else None,
        "rss_mb_per_hour_second_half": round(slope_per_hour([(s["t"], s["rss_mb"]) for s in half]), 1),
        "fds_half_end": [half[0]["fds"], half[-1]["fds"]] if half else None,
        "threads_half_end": [half[0]["threads"], half[-1]["threads"]] if half else None,
        "cpu_cores": round((samples[-1]["cpu_s"] - samples[0]["cpu_s"]) / (samples[-1]["t"] - samples[0]["t"]), 3)
        if len(samples) > 1
        else None,
        "samples": [{k: round(v, 2) for k, v in s.items()} for s in samples],
        "log": str(log_path),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
