"""Ingest on real video: sampling strategies, dual inputs, and broken cameras that must not hurt others."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import pytest

from detectors import Detector
from monitor.config import load_config
from monitor.engine import Engine
from monitor.ingest.worker import Source, StreamWorker
from tests.support.media import CROWD, LOWER_ZONE, QUIET, cut_scenario
from tests.support.rtsp import RtspCamera
from tests.support.workers import collect

pytestmark = pytest.mark.slow


def encode(source: Path, out: Path, *args: str) -> Path:
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(source),
            *args,
            "-an",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-bf",
            "0",
            str(out),
        ],
        check=True,
    )
    return out


def test_keyframe_only_and_sampled_conversion_count_like_full_decoding(
    square_mp4: Path, tmp_path: Path, detector: Detector
) -> None:
    short_gop = encode(
        square_mp4, tmp_path / "gop05.mp4", "-t", "12", "-g", "5", "-keyint_min", "5", "-sc_threshold", "0"
    )  # a keyframe every 0.5 s at 10 fps
    results = {}
    for mode in ("keyframes", "all"):
        worker = StreamWorker("cam", Source(str(short_gop), True, speed=4.0, loop=False), 2.0, 5.0, sampling=mode)
        frames = collect(worker, 4.5)
        t0 = frames[0].ts
        results[mode] = {
            round(f.ts - t0, 1): len(d) for f, d in zip(frames, detector.detect([f.image for f in frames]), strict=True)
        }
        assert worker.status().keyframes_only == (mode == "keyframes")
    # full decoding of every frame, as the reference
    with av.open(str(short_gop)) as container:
        full = {round(float(f.pts * f.time_base), 1): f.to_ndarray(format="bgr24") for f in container.decode(video=0)}
    for mode, counts in results.items():
        assert len(counts) >= 20, f"{mode}: about 2 samples per second of video"
        reference = dict(zip(counts, (len(d) for d in detector.detect([full[t] for t in counts])), strict=True))
        worst = max(abs(counts[t] - reference[t]) for t in counts)
        assert worst <= 1, f"{mode}: counts differ from full decoding by up to {worst}"


def test_dual_input_camera_detects_on_the_substream_and_clips_the_record_stream(
    square_mp4: Path,
    tmp_path: Path,
    write_config: Callable[..., Path],
    detector: Detector,
    rtsp_cameras: Callable[[dict[str, Path]], RtspCamera],
    redis_url: str,
    root: Path,
) -> None:
    main = cut_scenario(square_mp4, [QUIET, CROWD], tmp_path / "main.mp4")  # 768x576
    sub = encode(main, tmp_path / "sub.mp4", "-vf", "scale=384:288", "-g", "20")
    server = rtsp_cameras({"main": main, "sub": sub})
    path = write_config(
        {
            "redis_url": redis_url,
            "clips": {"pre_roll_s": 5, "post_roll_s": 2},
            "cameras": {
                "plaza": {
                    "inputs": {"detect": server.url("sub"), "record": server.url("main")},
                    "zones": {"lower": {"points": LOWER_ZONE}},
                }
            },
            "rules": [{"kind": "gathering", "camera": "plaza", "zone": "lower", "min_people": 2, "dwell_s": 2}],
        }
    )
    engine = Engine(load_config(path), detector=detector)
    engine.run(duration_s=16)
    cam = engine.cameras["plaza"]
    assert cam.last_frame is not None and cam.last_frame.image.shape[:2] == (288, 384), "detected on the substream"
    import redis

    from monitor.store.incidents import IncidentStore

    [record] = list(IncidentStore(redis.Redis.from_url(redis_url)).list())
    with av.open(record["clip"]) as clip:
        frame = next(clip.decode(video=0))
        assert (frame.width, frame.height) == (768, 576), "clips come from the full-resolution record stream"


@pytest.fixture
def silent_camera() -> Iterator[str]:
    """A TCP server that accepts connections and never says a word (a hung camera)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"rtsp://127.0.0.1:{server.getsockname()[1]}/stream"
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


def test_broken_cameras_do_not_hold_up_the_others(
    square_mp4: Path,
    tmp_path: Path,
    write_config: Callable[..., Path],
    detector: Detector,
    redis_url: str,
    silent_camera: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 200)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(square_mp4.read_bytes()[:300_000])  # the moov atom is at the front (faststart)
    timeouts = {"open_timeout_s": 2, "read_timeout_s": 2}
    path = write_config(
        {
            "redis_url": redis_url,
            "cameras": {
                "hung": {"url": silent_camera, **timeouts},
                "corrupt": {"url": str(corrupt)},
                "truncated": {"url": str(truncated)},
                "good": {"url": str(square_mp4)},
            },
        }
    )
    engine = Engine(load_config(path), detector=detector)
    runner = threading.Thread(target=engine.run, kwargs={"duration_s": 8}, daemon=True)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="monitor.ingest.worker"):
        runner.start()
        while engine.cameras["good"].detections < 3 and time.monotonic() - started < 30:
            time.sleep(0.1)
        first_detections = time.monotonic() - started
        runner.join(30)
    assert first_detections < 6, f"the good camera detected only after {first_detections:.1f} s"
    assert engine.cameras["good"].detections >= 10
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("camera corrupt offline") for m in messages), "the corrupt file is reported by name"
    assert any(m.startswith("camera hung offline") for m in messages), "the hung camera is reported by name"
    assert not any(m.startswith("camera good offline") for m in messages)
    assert engine.cameras["truncated"].detections >= 1, "a truncated file plays what it has, then loops"


SECRET = "Zq9xK"  # in every odd URL below; must never reach a status, a log line or an incident
ODD_URLS = [
    f"rtsp://admin:{SECRET}/a@127.0.0.1:9/x",  # '/' in the password: urllib raised IndexError on main
    f"rtsp://admin:p@ss/w?rd#{SECRET}@127.0.0.1:9/x",  # / ? # and @ in one password
    f"rtsp://admin:{SECRET}?1@127.0.0.1:9/x",
    f"rtsp://127.0.0.1:9/x?usr=admin&pwd={SECRET}",  # credentials in the query string
    f"http://127.0.0.1:9/snap?a=b@c&token={SECRET}",  # '@' in the query string
    f"rtsp://admin:{SECRET} x@127.0.0.1:9/x",  # a space: FFmpeg takes it, connection refused
    f"rtsp://admin:{SECRET}/stream",  # '@host' forgotten: the password reads as a port
    f"rtsp://[::1/x?pwd={SECRET}",
    f"rtsp://adm\x00in:{SECRET}@127.0.0.1:9/x",
    "",
    "rtsp://",
]


def test_odd_urls_and_missing_files_never_raise_they_retry_with_a_redacted_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "gone.mp4"
    sources = [Source(url, False, open_timeout_s=1, reconnect_max_s=1) for url in ODD_URLS]
    sources.append(Source(str(missing), True, reconnect_max_s=1))
    with caplog.at_level(logging.DEBUG):
        workers = [StreamWorker(f"cam{i}", src, 2.0, 2.0) for i, src in enumerate(sources)]  # constructing: fine
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not all(w.status().reconnects >= 2 for w in workers):
            time.sleep(0.1)
        alive = [w.alive for w in workers]
        statuses = [w.status() for w in workers]
        for worker in workers:
            worker.stop()
    assert all(alive), "no worker thread died"
    for source, status in zip(sources, statuses, strict=True):
        assert status.reconnects >= 2 and not status.online, f"{source.redacted()}: retried with backoff"
        assert status.last_error and SECRET not in status.last_error, status.last_error
        assert SECRET not in source.redacted()
    assert statuses[-1].last_error == f"FileNotFoundError: video file not found: {missing}"
    assert "percent-encode them" in (statuses[0].last_error or "") and "rtsp://***@127.0.0.1:9/x" in (
        statuses[0].last_error or ""
    )
    assert "Connection refused" in (statuses[3].last_error or "") and "pwd=***" in (statuses[3].last_error or "")
    assert caplog.records and not any(SECRET in r.getMessage() for r in caplog.records)


def test_missing_file_and_malformed_url_cameras_go_offline_while_the_others_detect(
    square_mp4: Path,
    tmp_path: Path,
    write_config: Callable[..., Path],
    detector: Detector,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import redis

    from monitor.store.incidents import IncidentStore

    fast = {"offline_after_s": 1, "reconnect_max_s": 1, "open_timeout_s": 1}
    path = write_config(
        {
            "redis_url": redis_url,
            "cameras": {
                "missing": {"url": "videos/not-there.mp4", **fast},
                "malformed": {"url": f"rtsp://admin:{SECRET}/x#1@127.0.0.1:9/stream", **fast},
                "good": {"url": str(square_mp4)},
            },
        }
    )
    engine = Engine(load_config(path), detector=detector)
    with caplog.at_level(logging.INFO):
        engine.run(duration_s=8)
    assert engine.cameras["good"].detections >= 10, "the good camera kept detecting"
    records = list(IncidentStore(redis.Redis.from_url(redis_url)).list())
    offline = {r["camera"]: r for r in records if r["kind"] == "camera_offline"}
    assert set(offline) == {"missing", "malformed"}, records
    assert "video file not found" in offline["missing"]["details"]["last_error"]
    assert str(tmp_path / "videos/not-there.mp4") in offline["missing"]["details"]["last_error"]
    assert "rtsp://***@127.0.0.1:9/stream" in offline["malformed"]["details"]["last_error"]
    assert SECRET not in json.dumps(records)
    assert not any(SECRET in r.getMessage() for r in caplog.records)
