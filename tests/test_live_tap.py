"""Live viewers take the running worker's packets: the camera is read once, and the picture starts from its buffer.

A real RTSP camera (GStreamer on loopback); the sessions it has open are counted on its side of the sockets. The
fragments a viewer gets are decoded back with FFmpeg.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import pytest
import redis

from monitor.config import load_config
from monitor.ingest.live_feed import INBOX_LIMIT, FeedHub, Fragment, LiveFeed, _Arrived, _Inbox
from monitor.ingest.prebuffer import BufferedPacket
from monitor.ingest.remux import StreamInfo
from monitor.ingest.taps import PacketTaps
from monitor.ingest.worker import Source, StreamWorker
from monitor.web.auth import Auth
from monitor.web.metrics import EngineMetrics
from tests.support.engine_process import start_engine
from tests.support.media import LIVE_FPS
from tests.support.processes import free_port, stop
from tests.support.rtsp import RtspCamera
from tests.support.waiting import wait_until
from tests.support.web import PASSWORDS, ROLES, Site, open_live, read_stream


class Recorder:
    """A viewer that keeps what it is told, with the time it was told."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.starts: list[tuple[float, StreamInfo]] = []
        self.fragments: list[tuple[float, Fragment]] = []
        self.offline: list[tuple[float, str]] = []

    def on_start(self, info: StreamInfo) -> None:
        with self.lock:
            self.starts.append((time.monotonic(), info))

    def on_fragment(self, fragment: Fragment) -> None:
        with self.lock:
            self.fragments.append((time.monotonic(), fragment))

    def on_offline(self, error: str) -> None:
        with self.lock:
            self.offline.append((time.monotonic(), error))

    def snapshot(self) -> list[tuple[float, Fragment]]:
        with self.lock:
            return list(self.fragments)

    def fragments_since(self, t: float) -> list[Fragment]:
        with self.lock:
            return [f for at, f in self.fragments if at >= t]


def decoded_times(info: StreamInfo, fragments: list[Fragment]) -> list[float]:
    """The presentation time of each picture FFmpeg decodes from the init segment and these fragments, as a
    browser's MSE gets them (its ``mediaTime``)."""
    data = io.BytesIO(info.init + b"".join(f.data for f in fragments))
    with av.open(data, "r", format="mp4") as container:
        return [float(frame.time or 0) for frame in container.decode(video=0)]


@pytest.fixture
def camera(rtsp_cameras: Callable[[dict[str, Path]], RtspCamera], live_mp4: Path) -> RtspCamera:
    return rtsp_cameras({"gate": live_mp4})


@pytest.fixture
def running(camera: RtspCamera) -> Iterator[list[StreamWorker]]:
    """The camera's stream worker, as the engine runs it (the list holds the current one: a test may replace it)."""
    source = Source(camera.url("gate"), is_file=False)
    workers = [StreamWorker("gate", source, detect_fps=2, ring_s=4.0)]
    workers[0].start()
    wait_until(lambda: workers[0].status().frames >= 2 * LIVE_FPS, 20, "the worker reads the camera")
    yield workers
    workers[-1].stop()


def local_of(workers: list[StreamWorker]) -> Callable[[str, Source], PacketTaps | None]:
    """What the engine offers the live feeds: the current worker's packets, when it reads that camera's input."""

    def local(camera: str, source: Source) -> PacketTaps | None:
        worker = workers[-1]
        return worker.taps if camera == worker.camera and source == worker.source and worker.alive else None

    return local


@pytest.mark.slow
def test_a_watched_camera_is_read_once_and_its_picture_starts_from_the_buffer(
    camera: RtspCamera, running: list[StreamWorker]
) -> None:
    worker = running[0]
    assert camera.sessions() == 1
    hub, viewer = FeedHub(local_of(running)), Recorder()
    joined = time.monotonic()
    feed = hub.join("gate", worker.source, viewer)
    try:
        wait_until(lambda: len(viewer.fragments_since(joined)) >= 3 * LIVE_FPS, 10, "3 s of fragments")
        assert feed.tapped and camera.sessions() == 1  # watched, and still one session at the camera
        got = viewer.snapshot()  # the feed carries on meanwhile: everything below is judged on one copy
        (_, info), (first_at, first) = viewer.starts[0], got[0]
        assert len(viewer.starts) == 1 and info.mime is not None and info.mime.startswith('video/mp4; codecs="avc1.4d')
        assert first.keyframe and first_at - joined < 0.5  # from the worker's buffer: no wait for the next keyframe
        steady = [at for at, _ in got if at >= joined + 1.0]  # after the buffered GOP came in one go
        assert len(steady) >= 0.8 * LIVE_FPS * (got[-1][0] - (joined + 1.0))  # the camera's rate
        times = decoded_times(info, [f for _, f in got])
        assert len(times) >= len(got) - 1  # all playable (the last may wait)
        pts = [f.pts_s for _, f in got]
        assert pts == sorted(pts) and len(set(pts)) == len(pts)
        # each fragment says when the browser will play it (the page matches that with its arrival for the
        # latency it shows): the muxer starts the timeline at 0, not at the worker's stamps (found: 1.2 s off)
        assert [round(t, 3) for t in times] == [round(p, 3) for p in pts[: len(times)]]
    finally:
        hub.leave(feed, viewer)
    wait_until(lambda: not worker.taps.active, 5, "the feed lets go of the worker")
    assert worker.status().online  # the camera carries on for detection

    own, mine = FeedHub(), Recorder()  # without an engine in the process (monitor serve): a session of its own
    feed = own.join("gate", worker.source, mine)
    try:
        wait_until(lambda: len(mine.fragments) >= LIVE_FPS, 15, "fragments from a feed of its own")
        assert not feed.tapped and camera.sessions() == 2
    finally:
        own.leave(feed, mine)


@pytest.mark.slow
def test_the_feed_follows_the_worker_through_a_camera_outage_and_a_replaced_worker(
    camera: RtspCamera, running: list[StreamWorker]
) -> None:
    hub, viewer = FeedHub(local_of(running)), Recorder()
    feed: LiveFeed = hub.join("gate", running[0].source, viewer)
    try:
        wait_until(lambda: len(viewer.fragments) >= LIVE_FPS, 10, "fragments")

        camera.kill()  # the camera goes away and comes back on the same address: the worker reconnects by itself
        wait_until(lambda: bool(viewer.offline), 15, "the viewer is told the camera is offline")
        late = Recorder()  # someone opens the camera page meanwhile: told it is offline at once, not "connecting"
        hub.join("gate", running[0].source, late)
        wait_until(lambda: bool(late.offline), 1, "a viewer joining during the outage is told")
        other_hub, first = FeedHub(local_of(running)), Recorder()  # a feed that starts while the worker is offline
        other = other_hub.join("gate", running[0].source, first)
        wait_until(lambda: bool(first.offline), 2, "a feed tapping an offline worker tells its viewer")
        assert other.tapped and not first.starts
        other_hub.leave(other, first)
        camera.start()
        back = time.monotonic()
        wait_until(lambda: len(viewer.fragments_since(back)) >= LIVE_FPS, 30, "fragments after the reconnect")
        wait_until(lambda: len(late.fragments_since(back)) >= LIVE_FPS, 5, "the late viewer's too")
        assert len(viewer.starts) == 2 and feed.tapped and camera.sessions() == 1
        hub.leave(feed, late)

        running[0].stop()  # a reload replaces the worker: the feed finds the new one
        running.append(StreamWorker("gate", running[0].source, detect_fps=2, ring_s=4.0))
        running[-1].start()
        replaced = time.monotonic()
        wait_until(lambda: len(viewer.fragments_since(replaced)) >= LIVE_FPS, 30, "fragments from the new worker")
        assert len(viewer.starts) == 3 and feed.tapped and running[-1].taps.active
        assert camera.sessions() == 1
        assert [e for _, e in viewer.offline][-1] == "camera stopped"
    finally:
        hub.leave(feed, viewer)


@pytest.mark.slow
def test_monitor_run_serves_live_video_without_opening_the_camera_again(
    camera: RtspCamera, redis_url: str, tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    port = free_port()
    cfg = write_config({
        "data_dir": str(tmp_path / "data"),
        "redis_url": redis_url,
        "web": {"host": "127.0.0.1", "port": port},
        "cameras": {"gate": {"url": camera.url("gate"), "detect_fps": 1, "detector": {"calibrate": False}}},
    })  # fmt: skip
    client = redis.Redis.from_url(redis_url)
    Auth(client).add_user("view", ROLES["view"], PASSWORDS["view"])
    log = tmp_path / "engine.log"
    engine = start_engine(cfg, log)
    try:
        site = Site(f"http://127.0.0.1:{port}", client, load_config(cfg), {}, EngineMetrics())
        wait_until(lambda: "web page: http" in log.read_text() and camera.sessions() == 1, 60, "started")
        with open_live(site, site.login("view")) as ws:
            init, frames = read_stream(ws, 3.0)
            assert camera.sessions() == 1  # watched from the engine's own worker
        assert init["type"] == "init" and init["codec"] == "h264"
        assert len(frames) >= 0.8 * LIVE_FPS * 3
        assert "live gate: taking the engine's packets" in log.read_text()
    finally:
        stop(engine)
        client.close()


def test_a_feed_that_falls_behind_skips_to_a_keyframe_instead_of_piling_up_packets() -> None:
    """The worker never waits on a live feed: past ``INBOX_LIMIT`` queued packets it drops them, and the feed
    carries on from the next keyframe that finds room (never from a frame whose references were dropped)."""
    inbox = _Inbox(threading.Event())

    def packet(n: int, keyframe: bool) -> BufferedPacket:
        return BufferedPacket(n / 25, n, n, 1, keyframe, av.Packet(b"\0\0\0\1" + bytes([n % 256])))

    for n in range(INBOX_LIMIT + 10):
        inbox.on_packet(packet(n, keyframe=n == 0))
    inbox.on_packet(packet(INBOX_LIMIT + 10, keyframe=True))  # no room yet: dropped too
    taken = [inbox.take() for _ in range(5)]
    inbox.on_packet(packet(INBOX_LIMIT + 11, keyframe=False))  # room, but its references are gone: dropped
    inbox.on_packet(packet(INBOX_LIMIT + 12, keyframe=True))  # the stream goes on from here
    inbox.on_packet(packet(INBOX_LIMIT + 13, keyframe=False))
    rest = [inbox.take() for _ in range(INBOX_LIMIT - 5 + 2)]
    pts = [e.item.pts for e in taken + rest if isinstance(e, _Arrived)]
    assert pts == [*range(INBOX_LIMIT), INBOX_LIMIT + 12, INBOX_LIMIT + 13]
