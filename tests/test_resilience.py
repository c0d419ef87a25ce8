"""A camera that dies must not hurt the others: offline incident, reconnect, steady detection elsewhere."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from detectors import Detector
from monitor.config import load_config
from monitor.engine import STALL_S, Engine
from monitor.ingest.worker import Source, StreamWorker
from monitor.store.incidents import IncidentStore
from tests.support.rtsp import RtspCamera
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

GRACE_S = 3.0


def test_killed_camera_goes_offline_and_recovers_while_the_other_keeps_its_rate(
    square_mp4: Path,
    write_config: Callable[..., Path],
    detector: Detector,
    rtsp_cameras: Callable[[dict[str, Path]], RtspCamera],
    redis_url: str,
) -> None:
    server = rtsp_cameras({"gate": square_mp4})
    live = {"open_timeout_s": 2, "read_timeout_s": 2, "reconnect_max_s": 2, "offline_after_s": GRACE_S}
    path = write_config(
        {
            "redis_url": redis_url,
            "cameras": {"gate": {"url": server.url("gate"), **live}, "yard": {"url": str(square_mp4)}},
        }
    )
    engine = Engine(load_config(path), detector=detector)
    store = IncidentStore(redis.Redis.from_url(redis_url))
    runner = threading.Thread(target=engine.run, daemon=True)
    runner.start()
    gate, yard = engine.cameras["gate"], engine.cameras["yard"]
    yard_samples: list[tuple[float, int]] = []
    sampling = threading.Event()

    def sample_yard() -> None:
        while not sampling.is_set():
            yard_samples.append((time.monotonic(), yard.detections))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample_yard, daemon=True)
    try:
        wait_until(lambda: gate.detections >= 4 and yard.detections >= 4, 60, "both cameras detecting")
        sampler.start()

        def offline_incidents(status: str) -> list[dict[str, object]]:
            return [r for r in store.list() if r["kind"] == "camera_offline" and r["status"] == status]

        server.kill()
        took = wait_until(lambda: bool(offline_incidents("open")), GRACE_S + STALL_S + 8, "camera_offline opened")
        assert took >= GRACE_S - 0.5, "not before the grace period"
        [incident] = offline_incidents("open")
        assert incident["camera"] == "gate"
        assert gate.worker.status().reconnects >= 1

        server.start()  # the camera comes back on the same address
        before = gate.detections
        wait_until(lambda: gate.detections > before + 2, 10, "gate detecting again within 10 s")
        wait_until(lambda: bool(offline_incidents("closed")), 5, "camera_offline closed")
    finally:
        sampling.set()
        engine.stop_event.set()
        runner.join(30)
    # the file camera kept ~2 detections/s the whole time: no gap of more than 1.5 s
    change_times = [t for (_, prev), (t, n) in itertools.pairwise(yard_samples) if n != prev]
    gaps = [b - a for a, b in itertools.pairwise(change_times)]
    span = yard_samples[-1][0] - yard_samples[0][0]
    rate = (yard_samples[-1][1] - yard_samples[0][1]) / span
    assert rate >= 1.6, f"yard kept {rate:.2f} detections/s"
    assert max(gaps) <= 1.5, f"yard detection paused {max(gaps):.1f} s"


def test_frozen_camera_is_a_stall_within_its_read_timeout_and_resumes(
    square_mp4: Path, rtsp_cameras: Callable[[dict[str, Path]], RtspCamera]
) -> None:
    """The socket stays open but nothing comes (a hung camera): FFmpeg's socket timeout ends the session."""
    server = rtsp_cameras({"gate": square_mp4})
    read_timeout_s = 2.0
    source = Source(server.url("gate"), False, open_timeout_s=2, read_timeout_s=read_timeout_s, reconnect_max_s=1)
    worker = StreamWorker("gate", source, 2.0, 2.0)
    worker.start()
    try:
        wait_until(lambda: worker.status().frames > 10, 20, "frames flowing")
        server.freeze()
        wait_until(lambda: worker.status().reconnects >= 1, read_timeout_s + 8, "the stall noticed")
        noticed = time.time()
        status = worker.status()
        assert not status.online
        assert "timed out" in (status.last_error or ""), status.last_error
        # the server had sent some video ahead before it froze: the timeout counts from the last packet
        assert status.last_arrival is not None
        silent = noticed - status.last_arrival
        assert read_timeout_s - 0.5 <= silent <= read_timeout_s + 1.0, f"stall reported after {silent:.1f} s of silence"
        server.thaw()
        before = worker.status().frames
        wait_until(lambda: worker.status().online and worker.status().frames > before + 10, 15, "frames again")
    finally:
        worker.stop()


def test_passwords_with_url_characters_never_crash_or_leak_beside_a_healthy_camera(
    square_mp4: Path, rtsp_cameras: Callable[[dict[str, Path]], RtspCamera], caplog: pytest.LogCaptureFixture
) -> None:
    """The real RTSP server (no authentication) and a healthy worker on it; workers whose URLs carry a password
    with / ? # @ in it, raw, percent-encoded, or as query parameters, run beside it."""
    server = rtsp_cameras({"gate": square_mp4})
    secret = "Zq9/x?k#1@a"
    host = f"127.0.0.1:{server.port}"
    odd = {
        "raw": f"rtsp://admin:{secret}@{host}/gate",  # never sent: FFmpeg would take 'admin:Zq9' for the host
        "at_only": f"rtsp://admin:Zq9@xk1@{host}/gate",  # '@' is fine: the server plays (it ignores credentials)
        "encoded": f"rtsp://admin:{quote(secret, safe='')}@{host}/gate",  # the right way to write it
        "query": f"rtsp://{host}/nope?usr=admin&pwd={quote(secret, safe='')}&token=Zq9xk1",  # 404 from the server
    }
    secrets = [secret, "Zq9@xk1", quote(secret, safe=""), "Zq9xk1"]

    def worker(name: str, url: str) -> StreamWorker:
        return StreamWorker(name, Source(url, False, open_timeout_s=2, read_timeout_s=2, reconnect_max_s=1), 2.0, 2.0)

    healthy = worker("healthy", server.url("gate"))
    workers = {name: worker(name, url) for name, url in odd.items()}
    frames: list[int] = []
    with caplog.at_level(logging.DEBUG):
        healthy.start()
        try:
            wait_until(lambda: healthy.status().frames > 10, 20, "the healthy camera delivers frames")
            for odd_worker in workers.values():
                odd_worker.start()
            end = time.monotonic() + 8
            while time.monotonic() < end:
                frames.append(healthy.status().frames)
                time.sleep(1)
            statuses = {name: w.status() for name, w in workers.items()}
            alive = {name: w.alive for name, w in workers.items()}
        finally:
            for w in [healthy, *workers.values()]:
                w.stop()
    assert all(b > a for a, b in itertools.pairwise(frames)), f"the healthy camera kept delivering: {frames}"
    assert all(alive.values()), alive
    raw, query = statuses["raw"], statuses["query"]
    assert raw.reconnects >= 2 and not raw.online, "retried with backoff"
    assert f"stream URL rtsp://***@{host}/gate has a user name or password with '/'" in (raw.last_error or "")
    assert query.reconnects >= 1 and "pwd=***" in (query.last_error or "") and "token=***" in (query.last_error or "")
    for name in ("at_only", "encoded"):  # reached the server: the stream plays
        assert statuses[name].frames > 10 and statuses[name].last_error is None, statuses[name]
    shown = [st.last_error or "" for st in statuses.values()] + [w.source.redacted() for w in workers.values()]
    shown += [r.getMessage() for r in caplog.records]
    assert any(f"opened rtsp://***@{host}/gate" in line for line in shown), "the opened stream is logged, redacted"
    leaks = [line for line in shown for s in secrets if s in line]
    assert not leaks, leaks
