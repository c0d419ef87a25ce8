"""Live video (#16): a real RTSP camera remuxed to fMP4 over a WebSocket and played by headless Chromium.

The latency is measured per frame in the page: every fragment carries the wall-clock time its packet reached the
server and its presentation time; ``requestVideoFrameCallback`` gives each shown frame's presentation time and the
moment Chromium puts it on screen. Both clocks are this machine's, so the difference is the time from the camera's
packet arriving to its frame being displayed (the camera's own encoding is not in it).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from monitor.config import load_config
from monitor.ingest.worker import StreamWorker
from monitor.runtime.camera import make_source
from monitor.web.auth import COOKIE
from monitor.web.live import HEADER, UNAUTHORIZED
from tests.support.browser import login, until
from tests.support.media import LIVE_FPS as FPS
from tests.support.rtsp import RtspCamera
from tests.support.web import (
    PASSWORDS,
    Site,
    guarded,
    make_media,
    open_live,
    publish_camera,
    read_stream,
    running_site,
    ws_url,
)


@contextmanager
def gate_site(
    redis_url: str, tmp_path: Path, square_mp4: Path, camera: RtspCamera, *, tapped: bool = False
) -> Iterator[Site]:
    """The web page with camera 'gate' on a real RTSP server (shared timeline, like a camera); ``tapped``: with the
    camera's stream worker in this process, as ``monitor run`` has it, whose packets the live feed takes."""
    media = make_media(square_mp4, tmp_path / "data")
    path = tmp_path / "streams.yaml"
    data = {
        "data_dir": str(tmp_path / "data"),
        "cameras": {
            "gate": {
                "url": camera.url("gate"),
                "zones": {"门口": {"points": [[0.1, 0.5], [0.6, 0.5], [0.6, 0.95], [0.1, 0.95]]}},
            }
        },
    }
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")  # fmt: skip
    loaded = load_config(path)
    cam = loaded.config.cameras["gate"]
    worker = StreamWorker("gate", make_source(loaded, cam, cam.record_url), None, 4.0) if tapped else None
    local = None
    if worker is not None:
        worker.start()
        local = lambda name, source: worker.taps if source == worker.source else None  # noqa: E731
    try:
        with running_site(redis_url, loaded, media, local_packets=local) as site:
            yield site
    finally:
        if worker is not None:
            worker.stop()


@pytest.fixture
def live_site(
    redis_url: str, tmp_path: Path, square_mp4: Path, live_mp4: Path, rtsp_cameras: Callable[[dict[str, Path]], Any]
) -> Iterator[Site]:
    """Camera 'gate' read by the web process alone (``monitor serve``)."""
    with gate_site(redis_url, tmp_path, square_mp4, rtsp_cameras({"gate": live_mp4})) as site:
        yield site


@pytest.fixture
def tapped_live_site(
    redis_url: str, tmp_path: Path, square_mp4: Path, live_mp4: Path, rtsp_cameras: Callable[[dict[str, Path]], Any]
) -> Iterator[Site]:
    """Camera 'gate' with its stream worker beside the web page (``monitor run``)."""
    with gate_site(redis_url, tmp_path, square_mp4, rtsp_cameras({"gate": live_mp4}), tapped=True) as site:
        yield site


# --- HTTP/WebSocket: who gets the stream ----------------------------------------------------------------------------


@pytest.mark.slow
def test_logged_in_viewer_gets_h264_fragments_at_the_camera_rate(live_site: Site) -> None:
    with open_live(live_site, live_site.login("view")) as ws:
        init, frames = read_stream(ws, 4.0)
    assert init["type"] == "init" and init["codec"] == "h264"
    assert init["mime"].startswith('video/mp4; codecs="avc1.4d')  # main profile, read from the avcC box
    assert (init["width"], init["height"]) == (768, 576)
    assert len(frames) >= 0.8 * FPS * 4  # the GOP replay comes on top: at least the camera's rate
    first_wall, _ = HEADER.unpack(frames[0][: HEADER.size])
    assert frames[0][HEADER.size + 4 : HEADER.size + 8] == b"moof"  # each message: header, then moof+mdat
    assert abs(first_wall - time.time()) < 10
    pts = [HEADER.unpack(f[: HEADER.size])[1] for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)


@pytest.mark.slow
def test_live_video_outlives_the_request_deadline(live_site: Site) -> None:
    """The deadline covers the upgrade request only: the WebSocket then streams for as long as it is watched."""
    with guarded(live_site, 1.0) as fast, open_live(fast, fast.login("view")) as ws:
        _, frames = read_stream(ws, 3.0)
    assert len(frames) >= 0.8 * FPS * 3


@pytest.mark.slow
def test_anonymous_viewers_and_foreign_pages_are_refused(live_site: Site) -> None:
    with open_live(live_site, None) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == UNAUTHORIZED  # no media came first
    viewer = live_site.login("view")
    with pytest.raises(InvalidStatus) as refused:  # a page elsewhere riding the cookie: no handshake at all
        open_live(live_site, viewer, origin="http://evil.example")
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        connect(ws_url(live_site), additional_headers={"Cookie": f"{COOKIE}={viewer.cookies[COOKIE]}"})  # no Origin
    assert not live_threads()  # nobody was let in: no camera was opened


def live_threads() -> list[str]:
    """Names of running live feeds (the web server runs in this test process)."""
    return [t.name for t in threading.enumerate() if t.name.startswith("live-")]


@pytest.mark.slow
def test_logout_ends_the_stream_and_the_last_viewer_stops_the_feed(live_site: Site) -> None:
    viewer = live_site.login("view")
    with open_live(live_site, viewer) as ws:
        init, frames = read_stream(ws, 1.0)
        assert init["type"] == "init" and frames
        assert viewer.post("/auth/logout").status_code in (200, 204)
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=20)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == UNAUTHORIZED
        assert time.monotonic() - started < 12  # re-checked every 5 s
    deadline = time.monotonic() + 15
    while live_threads():
        assert time.monotonic() < deadline, "the feed did not stop after its last viewer left"
        time.sleep(0.2)


# --- The browser ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("site_kind", ["live_site", "tapped_live_site"])
def test_camera_page_plays_live_video_at_the_camera_rate_within_a_second(
    browser: Any, site_kind: str, request: pytest.FixtureRequest
) -> None:
    """Both ways of reading the camera: the web process's own feed (a cold start waits for a keyframe) and the
    engine's worker's packets (the buffered GOP comes at once, and the page must start from it)."""
    live_site: Site = request.getfixturevalue(site_kind)
    page = login(browser, live_site, "view", PASSWORDS["view"], "/cameras/gate")
    video = "document.querySelector('[data-testid=live-video]')"
    until(page, f"{video} && {video}.liveStats.firstFrameAt !== null", timeout=20)
    first_ms = page.evaluate(f"{video}.liveStats.firstFrameAt")  # since this page's navigation began
    quality = f"(q => [q.totalVideoFrames, q.droppedVideoFrames, performance.now()])({video}.getVideoPlaybackQuality())"
    start = page.evaluate(quality)
    time.sleep(5)
    end = page.evaluate(quality)
    seconds = (end[2] - start[2]) / 1000
    rate, shown = (end[0] - start[0]) / seconds, (end[0] - end[1] - start[0] + start[1]) / seconds
    latencies = sorted(page.evaluate(f"{video}.liveStats.latencies"))
    state = page.evaluate(
        "(() => { const s = document.getElementById('stage'), i = document.getElementById('live-image');"
        " return {cls: s.className, still: getComputedStyle(i).visibility, order: [...s.children].map(c => c.id ||"
        " c.tagName), dropped: document.querySelector('video').getVideoPlaybackQuality().droppedVideoFrames}; })()"
    )
    median, p95 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.95)]
    print(f"first frame {first_ms:.0f} ms after navigation, {rate:.1f} fps decoded ({shown:.1f} shown), "
          f"latency median {median:.3f} s, p95 {p95:.3f} s, {state}")  # fmt: skip
    assert rate >= 0.8 * FPS  # the measure: frames decoded at the camera's rate
    # and they reach the screen (how many the compositor shows depends on the machine's load: headless Chromium
    # on a loaded 2-core CI machine dropped most of them from display while decoding every one)
    assert shown > 0
    assert len(latencies) >= 3 * FPS
    # the "under a second" for the typical frame (median: 0.33-0.63 s measured), and every frame but the 5 %
    # the loaded CI box's Chromium stalls on under 1.5 s (once p95 1.10 s with the median at 0.335 s and only 2.8
    # of 14.4 decoded frames/s composited)
    assert median < 1.0
    assert p95 < 1.5
    assert first_ms < 2000  # cold start: page, RTSP connect, then at most one GOP (1 s) to the next keyframe
    if site_kind == "tapped_live_site":  # the worker's buffered GOP at once (0.2-0.3 s idle; own feed 1.3 s)
        assert first_ms < 1000  # and the burst is jumped, not caught up at 1.1x: the median above holds for it too
    assert "playing" in state["cls"] and state["still"] == "hidden"  # video shown, the still hidden under it
    assert state["order"].index("VIDEO") < state["order"].index("zones")  # the zones layer stays on top
    page.click("text=显示检测框 Show detections")  # the annotated still (boxes) over the video
    until(page, "getComputedStyle(document.getElementById('live-image')).visibility === 'visible'")


@pytest.fixture
def file_site(redis_url: str, tmp_path: Path, square_mp4: Path) -> Iterator[Site]:
    """Cameras from looping files (as in the sample streams.yaml): 'plaza' in H.264, 'h265cam' in H.265."""
    hevc = tmp_path / "hevc.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-t", "2", "-i", str(square_mp4), "-an",
                    "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=none", str(hevc)],
                   check=True)  # fmt: skip
    media = make_media(square_mp4, tmp_path / "data")
    path = tmp_path / "streams.yaml"
    data = {
        "data_dir": str(tmp_path / "data"),
        "cameras": {"plaza": {"url": str(media["clip"])}, "h265cam": {"url": str(hevc)}},
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with running_site(redis_url, load_config(path), media) as site:
        yield site


@pytest.mark.slow
def test_file_cameras_are_paced_and_looped_like_cameras(file_site: Site) -> None:
    viewer = file_site.login("view")
    with open_live(file_site, viewer, camera="plaza") as ws:
        init, frames = read_stream(ws, 6.0)  # the clip is 4 s long: it loops within this
    assert init["type"] == "init"
    pts = [HEADER.unpack(f[: HEADER.size])[1] for f in frames]
    # 10 fps in real time, not as fast as the file reads (the lower bound leaves room for a loaded machine: the
    # reader's restart at the loop and a busy CPU may cost a few frames; pacing is what this test is about)
    assert 0.6 * 10 * 6 <= len(frames) <= 1.2 * 10 * 6
    assert pts == sorted(pts) and pts[-1] - pts[0] > 5  # time goes on across the loop


@pytest.mark.slow
def test_h265_camera_falls_back_to_the_still_with_a_note(browser: Any, file_site: Site) -> None:
    viewer = file_site.login("view")
    with open_live(file_site, viewer, camera="h265cam") as ws:
        assert json.loads(ws.recv(timeout=15)) == {"type": "unsupported", "codec": "hevc"}
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)  # nothing more is sent
    publish_camera(file_site.client, "h265cam", file_site.media["live"])
    page = login(browser, file_site, "view", PASSWORDS["view"], "/cameras/h265cam")
    note = page.locator("[data-testid=live-note]")
    note.wait_for()
    assert note.inner_text() == "H.265: live video unavailable, showing stills 显示静态画面"
    until(
        page, "document.getElementById('live-image').complete && document.getElementById('live-image').naturalWidth > 0"
    )
    assert page.evaluate("!document.getElementById('stage').classList.contains('live-on')")  # the still is shown
