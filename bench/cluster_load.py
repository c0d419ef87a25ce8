"""Benchmark: what one clustered node costs Redis and etcd per camera (the measured inputs of bench/CAPACITY.md).

Not a test. Starts a real redis-server and a one-member etcd on loopback, then ``monitor run --node a`` with
``--cameras`` file cameras looping sample_videos/square.mp4 cut into quiet and crowd stretches (a gathering rule on
each, so incidents open and close as in a busy square), and after a warm-up counts over ``--seconds``:

* Redis: ``INFO commandstats`` calls per command before and after (the engine is the only client);
* etcd: its /metrics counters before and after (raft proposals committed = writes; Range/Txn/LeaseKeepAlive
  requests through the gateway);
* incidents opened and closed, and the bytes of the clips and snapshots written.

    PYTHONPATH=. .venv/bin/python bench/cluster_load.py --cameras 2 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.media import CROWD, LOWER_ZONE, QUIET, cut_scenario  # noqa: E402
from tests.support.processes import free_port  # noqa: E402

ETCD_COUNTERS = (
    "etcd_server_proposals_committed_total",
    "etcd_mvcc_put_total",
    "etcd_mvcc_txn_total",
    "etcd_mvcc_range_total",
)
GRPC = re.compile(r'^grpc_server_handled_total\{grpc_code="OK",grpc_method="(\w+)".*\} (\S+)$', re.M)


def etcd_counters(url: str) -> dict[str, float]:
    """The counters above plus gRPC calls per method (the gateway turns every JSON call into one)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    out: dict[str, float] = {}
    for name in ETCD_COUNTERS:
        match = re.search(rf"^{name} (\S+)$", text, re.M)
        out[name] = float(match.group(1)) if match else 0.0
    for method, value in GRPC.findall(text):
        out[f"grpc {method}"] = out.get(f"grpc {method}", 0.0) + float(value)
    return out


def redis_calls(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the server started."""
    stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--detect-fps", type=float, default=1.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vm-cluster-load-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        redis_port, etcd_port, peer_port = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--dir", str(work)],
            stdout=subprocess.DEVNULL,
        ))  # fmt: skip
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        procs.append(subprocess.Popen(
            ["etcd", "--name", "m0", "--data-dir", str(work / "etcd"), "--listen-client-urls", etcd_url,
             "--advertise-client-urls", etcd_url, "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
             "--initial-cluster", f"m0=http://127.0.0.1:{peer_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        video = cut_scenario(ROOT / "sample_videos/square.mp4", [QUIET, QUIET, CROWD], work / "scenario.mp4")
        cameras = {f"cam{i}": {"url": str(video), "detect_fps": args.detect_fps,
                               "zones": {"lower": {"points": LOWER_ZONE}}} for i in range(args.cameras)}  # fmt: skip
        rules = [{"kind": "gathering", "camera": name, "zone": "lower", "min_people": 4, "dwell_s": 2, "clear_s": 5}
                 for name in cameras]  # fmt: skip
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        config = {"data_dir": "./data", "redis_url": redis_url, "cameras": cameras, "rules": rules,
                  "clips": {"pre_roll_s": 5, "post_roll_s": 5},
                  "cluster": {"etcd": [etcd_url], "lease_ttl_s": 10}}  # fmt: skip
        (work / "streams.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        client = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if client.ping() and httpx.get(f"{etcd_url}/health", timeout=1).json().get("health") == "true":
                    break
            except (redis.RedisError, httpx.HTTPError):
                pass
            time.sleep(0.2)
        with (work / "engine.log").open("wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "monitor", "run", "-c", str(work / "streams.yaml"), "--no-web", "--node", "a"],
                stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            ))  # fmt: skip
        time.sleep(args.warmup)
        r0, e0, t0 = redis_calls(client), etcd_counters(etcd_url), time.monotonic()
        time.sleep(args.seconds)
        r1, e1, t1 = redis_calls(client), etcd_counters(etcd_url), time.monotonic()
        seconds = t1 - t0
        records = [json.loads(client.get(key) or b"{}") for key in client.scan_iter("vm:incident:*")]
        data = work / "data"
        clips = [p.stat().st_size for p in data.rglob("clips/*.mp4")]
        snaps = [p.stat().st_size for p in data.rglob("snapshots/*.jpg")]
        redis_delta = delta(r1, r0)
        etcd_delta = delta(e1, e0)
        camera_s = args.cameras * seconds
        report = {
            "cameras": args.cameras,
            "detect_fps": args.detect_fps,
            "seconds": round(seconds, 1),
            "redis_calls": redis_delta,
            "redis_calls_per_camera_s": round(sum(redis_delta.values()) / camera_s, 2),
            "etcd": etcd_delta,
            "etcd_per_minute": {k: round(v * 60 / seconds, 1) for k, v in etcd_delta.items()},
            "incidents_in_store": len(records),
            "clip_bytes": clips,
            "snapshot_bytes": snaps,
        }
        print(json.dumps(report, indent=1))
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
