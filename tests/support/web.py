"""Web tests' world: real media cut with ffmpeg, a config, incidents and camera status seeded in Redis, a server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from websockets.sync.client import ClientConnection, connect

from monitor.config import LoadedConfig, load_config
from monitor.incident import AnnouncementResult, Incident, new_incident_id
from monitor.ingest.live_feed import LocalPackets
from monitor.store.incidents import IncidentStore
from monitor.types import PlaybackResult
from monitor.web.app import create_app
from monitor.web.auth import COOKIE, Auth
from monitor.web.metrics import EngineMetrics
from monitor.web.server import WebServer
from tests.support.processes import free_port, stop

SECRET = "S3cretPa55"  # appears in the config, the status hash and records: must never reach a response
PASSWORDS = {"admin": "admin-pass-1", "oper": "oper-pass-1", "view": "view-pass-1"}
ROLES = {"admin": "admin", "oper": "operator", "view": "viewer"}


def make_media(square_mp4: Path, data_dir: Path) -> dict[str, Path]:
    """A 4 s H.264 faststart clip, an incident snapshot and a live snapshot, cut from the sample video."""
    ffmpeg = shutil.which("ffmpeg") or pytest.skip("apt-get install ffmpeg")
    for sub in ("clips", "snapshots", "live"):
        (data_dir / sub).mkdir(parents=True, exist_ok=True)
    out = {
        "clip": data_dir / "clips" / "a.mp4",
        "clip_b": data_dir / "clips" / "b.mp4",
        "snapshot": data_dir / "snapshots" / "a.jpg",
        "live": data_dir / "live" / "gate.jpg",
    }
    run = ["-y", "-v", "error", "-i", str(square_mp4)]
    subprocess.run([ffmpeg, *run, "-t", "4", "-c:v", "copy", "-an", "-movflags", "+faststart", out["clip"]], check=True)
    subprocess.run([ffmpeg, *run, "-ss", "4", "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-an",
                    "-movflags", "+faststart", out["clip_b"]], check=True)  # fmt: skip
    subprocess.run([ffmpeg, *run, "-ss", "1", "-frames:v", "1", "-q:v", "4", out["snapshot"]], check=True)
    subprocess.run([ffmpeg, *run, "-ss", "2", "-frames:v", "1", "-q:v", "6", out["live"]], check=True)
    return out


def write_config(path: Path, data_dir: Path) -> LoadedConfig:
    """A two-camera config (one with an RTSP password) whose data directory holds the media."""
    data = {
        "data_dir": str(data_dir),
        "cameras": {
            "gate": {
                "url": f"rtsp://admin:{SECRET}@10.0.0.5:554/stream1",
                "zones": {"门口": {"points": [[0.1, 0.5], [0.6, 0.5], [0.6, 0.95], [0.1, 0.95]]}},
            },
            "square": {"url": "rtsp://10.0.0.6/live", "zones": {"px": {"points": [[10, 10], [300, 10], [300, 200]]}}},
        },
    }
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_config(path)


def publish_camera(client: redis.Redis, name: str, live: Path | None, *, online: bool = True, people: int = 3) -> None:
    """What the engine publishes for a camera every few seconds."""
    IncidentStore(client).publish_camera_status(
        name,
        {
            "online": int(online),
            "people": people,
            "zones": '{"门口": 2}',
            "input_fps": 10.0,
            "detect_fps": 2.0,
            "dropped": 4,
            "reconnects": 1,
            "last_frame_ts": time.time(),
            "last_error": "" if online else f"cannot open rtsp://admin:{SECRET}@10.0.0.5:554/stream1: timeout",
            "width": 768,
            "height": 576,
            "snapshot": str(live) if live else "",
            "url": "rtsp://***@10.0.0.5:554/stream1",
            "updated_ts": time.time(),
        },
        ttl_s=600,
    )


def seed_incident(
    client: redis.Redis,
    *,
    camera: str = "gate",
    kind: str = "gathering",
    ts: float | None = None,
    clip: Path | None = None,
    snapshot: Path | None = None,
    close: bool = True,
    failed_speaker: bool = False,
    duration_s: float = 30.0,
) -> str:
    """An incident as the engine records it: opened, media attached, announced, closed (``duration_s`` later)."""
    store = IncidentStore(client)
    ts = time.time() - 60 if ts is None else ts
    new = Incident(
        new_incident_id(ts), kind, f"{kind}/{camera}/门口", camera, "门口", ts, peak_count=5, opened_count=5,
        details={"min_people": 4, "password": SECRET},
    )  # fmt: skip
    incident, change = new.opening()
    changes = [change]
    incident, change = incident.change("media", clip=str(clip) if clip else None,
                                       snapshot=str(snapshot) if snapshot else None)  # fmt: skip
    changes.append(change)
    results = [PlaybackResult("horn1", ts + 1, ts + 4, True)]
    if failed_speaker:
        error = f"HTTP 401 from http://root:{SECRET}@10.0.0.9/axis-cgi/audio/transmit.cgi"
        results.append(PlaybackResult("horn2", ts + 1, ts + 2, False, error))
    for result in results:
        incident, change = incident.change("announcement", result=AnnouncementResult.of(result).to_record())
        changes.append(change)
    if close:
        incident, change = incident.change("closed", ts=ts + duration_s, peak=7, closed_by="rule")
        changes.append(change)
    for change in changes:
        store.apply(change)
    return incident.id


@dataclass
class Site:
    """A running web server on a seeded Redis."""

    url: str
    client: redis.Redis
    config: LoadedConfig
    media: dict[str, Path]
    metrics: EngineMetrics

    def login(self, user: str, password: str | None = None) -> httpx.Client:
        """An HTTP client holding ``user``'s session cookie, sending their CSRF token on writes."""
        http = httpx.Client(base_url=self.url, timeout=10)
        res = http.post("/auth/login", json={"username": user, "password": password or PASSWORDS[user]})
        assert res.status_code == 200, res.text
        http.headers["X-CSRF-Token"] = res.json()["csrf_token"]
        return http

    def anonymous(self) -> httpx.Client:
        """An HTTP client without a session."""
        return httpx.Client(base_url=self.url, timeout=10)


@contextmanager
def running_site(
    redis_url: str,
    config: LoadedConfig,
    media: dict[str, Path],
    engine_health: Callable[[], Mapping[str, object]] | None = None,
    local_packets: LocalPackets | None = None,
) -> Iterator[Site]:
    """Users admin/oper/view, camera 'gate' live, and the web server on a free port (``engine_health``: an
    engine's own state, as ``monitor run`` serves it)."""
    client = redis.Redis.from_url(redis_url)
    auth = Auth(client)
    for name, role in ROLES.items():
        auth.add_user(name, role, PASSWORDS[name])
    publish_camera(client, "gate", media["live"])
    metrics = EngineMetrics()
    app = create_app(client, config, metrics=metrics, engine_health=engine_health, local_packets=local_packets)
    server = WebServer(app, port=0).start()
    try:
        yield Site(server.url, client, config, media, metrics)
    finally:
        server.stop()
        client.close()


@pytest.fixture
def site(redis_url: str, tmp_path: Path, square_mp4: Path) -> Iterator[Site]:
    """A running web page with a real clip, snapshot and live image from the sample video."""
    media = make_media(square_mp4, tmp_path / "data")
    config = write_config(tmp_path / "streams.yaml", tmp_path / "data")
    with running_site(redis_url, config, media) as running:
        yield running


@pytest.fixture(scope="module")
def module_media(tmp_path_factory: pytest.TempPathFactory, square_mp4: Path) -> dict[str, Path]:
    """Real clips and JPEGs, cut once per test module (for tests that only read them)."""
    return make_media(square_mp4, tmp_path_factory.mktemp("data"))


@pytest.fixture
def shared_media_site(redis_url: str, tmp_path: Path, module_media: dict[str, Path]) -> Iterator[Site]:
    """The web server on a fresh Redis with users, a live camera and the test config, over the module's media."""
    config = write_config(tmp_path / "streams.yaml", module_media["clip"].parent.parent)
    with running_site(redis_url, config, module_media) as running:
        yield running


SERVE = (
    "import argparse, sys; from monitor.web.cli import register; p = argparse.ArgumentParser(); "
    "register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
)


@contextmanager
def serve_command(config: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`monitor serve -c config` in a process of its own on a free port: (process, base URL) once it answers."""
    port, root = free_port(), Path(__file__).resolve().parent.parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, "serve", "-c", str(config), "--port", str(port)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "monitor serve did not start"
                time.sleep(0.1)
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@contextmanager
def guarded(site: Site, deadline_s: float) -> Iterator[Site]:
    """The site's app on a second server whose requests must arrive whole within ``deadline_s``."""
    server = WebServer(create_app(site.client, site.config), port=0, request_deadline_s=deadline_s).start()
    try:
        yield replace(site, url=server.url)
    finally:
        server.stop()


# --- the live-video WebSocket (#16), as a browser on the site opens it ------------------------------------------


def ws_url(site: Site, camera: str = "gate") -> str:
    return site.url.replace("http://", "ws://") + f"/api/cameras/{camera}/live"


def open_live(
    site: Site, http: httpx.Client | None, *, origin: str | None = None, camera: str = "gate"
) -> ClientConnection:
    """A WebSocket to the live route, as a browser on the site would open it (cookie, Origin)."""
    headers = {"Origin": origin or site.url}
    if http is not None:
        headers["Cookie"] = f"{COOKIE}={http.cookies[COOKIE]}"
    return connect(ws_url(site, camera), additional_headers=headers, open_timeout=10, max_size=None)


def read_stream(ws: ClientConnection, seconds: float) -> tuple[dict[str, Any], list[bytes]]:
    """The init message and the frames received within ``seconds`` of the first one (a cold feed's first frame
    waits for the camera's next keyframe, up to a GOP after the init: that wait is not the frame rate)."""
    init: dict[str, Any] = json.loads(ws.recv(timeout=15))
    first = ws.recv(timeout=15)
    assert isinstance(first, bytes)
    frames: list[bytes] = [first]
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = ws.recv(timeout=left)
        except TimeoutError:
            break
        assert isinstance(message, bytes)
        frames.append(message)
    return init, frames
