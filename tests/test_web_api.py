"""JSON API against a real Redis and a real uvicorn: access control, CSRF, rate limits, media by id, redaction."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import yaml

from monitor.runtime.status import live_picture_path
from monitor.store.incidents import EVENTS, IncidentStore
from monitor.web.auth import FAILURES_PER_USER_IP
from monitor.web.cli import register
from monitor.web.views import strip_paths
from tests.support.redis_server import servers, wait_for_server
from tests.support.web import SECRET, Site, publish_camera, seed_incident, serve_command


@pytest.fixture
def site(shared_media_site: Site) -> Site:
    """This module's tests share one cut of the media."""
    return shared_media_site


def _api_routes(site: Site) -> list[tuple[str, str]]:
    """Every operation under /api/ that the OpenAPI document lists."""
    paths = site.login("admin").get("/openapi.json").json()["paths"]
    return [(m.upper(), p) for p, ops in paths.items() if p.startswith("/api/") for m in ops]


def test_every_api_route_refuses_anonymous_requests(site: Site) -> None:
    incident = seed_incident(site.client, clip=site.media["clip"], snapshot=site.media["snapshot"])
    routes = _api_routes(site)
    assert len(routes) >= 12
    http = site.anonymous()
    for method, path in routes:
        url = path.replace("{incident_id}", incident).replace("{name}", "gate")
        res = http.request(method, url, json={"note": "x", "role": "admin", "password": "12345678"})
        assert res.status_code == 401, (method, url, res.status_code, res.text)
    assert http.get("/healthz").json() == {"ok": True, "status": "ok", "redis": True}
    assert http.get("/openapi.json").status_code == 401
    page = http.get(f"/incidents/{incident}")
    assert page.status_code == 303 and page.headers["location"] == f"/login?next=%2Fincidents%2F{incident}"
    http.cookies.set("vm_session", "forged")
    assert http.get("/api/cameras").status_code == 401


def test_login_cookie_is_httponly_strict_and_logout_ends_the_session(site: Site) -> None:
    http = site.anonymous()
    assert http.post("/auth/login", json={"username": "view", "password": "wrong-password"}).status_code == 401
    assert http.post("/auth/login", json={"username": "nobody", "password": "whatever1"}).status_code == 401
    res = http.post("/auth/login", json={"username": "view", "password": "view-pass-1"})
    assert res.status_code == 200 and res.json()["role"] == "viewer"
    cookie = res.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert http.get("/api/me").json()["user"] == "view"
    assert http.post("/auth/logout").status_code == 403  # no CSRF token
    assert http.post("/auth/logout", headers={"X-CSRF-Token": res.json()["csrf_token"]}).status_code == 204
    assert http.get("/api/me").status_code == 401


def test_viewer_cannot_act_operator_can_and_the_audit_trail_keeps_it(site: Site) -> None:
    incident = seed_incident(site.client, clip=site.media["clip"])
    viewer, operator = site.login("view"), site.login("oper")
    assert viewer.post(f"/api/incidents/{incident}/acknowledge", json={}).status_code == 403
    assert viewer.post(f"/api/incidents/{incident}/note", json={"note": "x"}).status_code == 403

    res = operator.post(f"/api/incidents/{incident}/acknowledge", json={"note": "网格员已到场"})
    assert res.status_code == 200, res.text
    assert res.json()["status"] == "acknowledged"
    again = operator.post(f"/api/incidents/{incident}/acknowledge", json={})
    assert again.status_code == 409 and "oper" in again.json()["detail"]
    assert operator.post(f"/api/incidents/{incident}/note", json={"note": "  "}).status_code == 422
    assert operator.post(f"/api/incidents/{incident}/note", json={"note": "人群已散"}).status_code == 200
    assert operator.post(f"/api/incidents/{incident}/false_alarm").status_code == 200
    assert operator.post("/api/incidents/0000000000000-abcdef/acknowledge").status_code == 404

    stored = IncidentStore(site.client).get(incident)
    assert stored is not None and stored["status"] == "false_alarm"
    assert [(a["user"], a["action"], a["note"]) for a in stored["audit"]] == [
        ("oper", "acknowledge", "网格员已到场"),
        ("oper", "note", "人群已散"),
        ("oper", "false_alarm", None),
    ]
    events = cast("list[tuple[bytes, dict[bytes, bytes]]]", site.client.xrange(EVENTS))
    types = [fields[b"type"] for _, fields in events]
    assert types[-3:] == [b"incident_acknowledged", b"incident_note", b"incident_false_alarm"]
    detail = viewer.get(f"/api/incidents/{incident}").json()
    assert [a["action"] for a in detail["audit"]] == ["acknowledge", "note", "false_alarm"]
    assert any("acknowledge by oper" in t["what"] for t in detail["timeline"])
    whats = [t["what"] for t in detail["timeline"]]
    assert "opened (5 people)" in whats and "closed (peak 7)" in whats, "the count at opening, then the peak"


def test_state_changes_without_the_csrf_token_are_refused(site: Site) -> None:
    incident = seed_incident(site.client)
    operator = site.login("oper")
    token = operator.headers.pop("X-CSRF-Token")
    assert operator.post(f"/api/incidents/{incident}/acknowledge").status_code == 403
    wrong = {"X-CSRF-Token": token[:-2] + "xx"}
    assert operator.post(f"/api/incidents/{incident}/acknowledge", headers=wrong).status_code == 403
    assert (
        operator.post(
            f"/api/incidents/{incident}/acknowledge", headers={b"X-CSRF-Token": "é".encode("latin-1")}
        ).status_code
        == 403
    )
    admin = site.login("admin")
    admin.headers.pop("X-CSRF-Token")
    assert admin.put("/api/users/eve", json={"role": "admin", "password": "12345678"}).status_code == 403
    stored = IncidentStore(site.client).get(incident)
    assert stored is not None and stored["status"] == "closed" and "audit" not in stored


def test_login_is_rate_limited_per_user_and_address(site: Site) -> None:
    http = site.anonymous()
    for _ in range(FAILURES_PER_USER_IP):
        assert http.post("/auth/login", json={"username": "oper", "password": "guess-guess"}).status_code == 401
    blocked = http.post("/auth/login", json={"username": "oper", "password": "oper-pass-1"})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 60
    assert http.post("/auth/login", json={"username": "view", "password": "view-pass-1"}).status_code == 200


def test_admin_manages_users(site: Site) -> None:
    admin, operator = site.login("admin"), site.login("oper")
    assert operator.get("/api/users").status_code == 403
    assert admin.put("/api/users/张三", json={"role": "viewer", "password": "zhang-pass-1"}).status_code == 200
    assert ("张三", "viewer") in [(u["name"], u["role"]) for u in admin.get("/api/users").json()]
    zhang = site.login("张三", "zhang-pass-1")
    assert admin.delete("/api/users/张三").status_code == 204
    assert zhang.get("/api/me").status_code == 401  # the session dies with the account
    assert admin.delete("/api/users/admin").status_code == 409


def test_media_only_by_incident_id(site: Site) -> None:
    own = seed_incident(site.client, clip=site.media["clip"], snapshot=site.media["snapshot"])
    other = seed_incident(site.client, clip=site.media["clip_b"])
    no_media = seed_incident(site.client)
    (site.media["clip"].parent / f"{no_media}.mp4").write_bytes(b"guessable name")
    outside = seed_incident(site.client, clip=Path("/etc/passwd"), snapshot=Path("/etc/hostname"))
    dotdot = seed_incident(site.client, clip=site.media["clip"].parent / ".." / ".." / "escape.mp4")
    http = site.login("view")

    assert http.get(f"/api/incidents/{own}/clip").content == site.media["clip"].read_bytes()
    assert http.get(f"/api/incidents/{other}/clip").content == site.media["clip_b"].read_bytes()
    assert http.get(f"/api/incidents/{own}/clip?path=/etc/passwd").content == site.media["clip"].read_bytes()
    assert http.get(f"/api/incidents/{own}/snapshot").headers["content-type"] == "image/jpeg"
    for url in (
        f"/api/incidents/{no_media}/clip",
        f"/api/incidents/{outside}/clip",
        f"/api/incidents/{outside}/snapshot",
        f"/api/incidents/{dotdot}/clip",
        "/api/incidents/..%2F..%2F..%2Fetc%2Fpasswd/clip",
        "/api/incidents/%2e%2e/clip",
        f"/api/incidents/{own}%2F..%2F{other}/clip",
        "/api/incidents/..\\..\\etc\\passwd/snapshot",
        "/api/cameras/..%2F..%2Fetc%2Fpasswd/snapshot",
        "/api/cameras/square/snapshot",  # known camera, no live image
    ):
        res = http.get(url)
        assert res.status_code in (404, 422), (url, res.status_code)
        assert b"root:" not in res.content and b"guessable" not in res.content
    site.client.hset("vm:camera:gate", "snapshot", "/etc/passwd")
    assert http.get("/api/cameras/gate/snapshot").status_code == 404
    expired = seed_incident(site.client, clip=site.media["clip"])
    IncidentStore(site.client).update(expired, lambda rec: rec.update(media_expired=True))
    assert http.get(f"/api/incidents/{expired}/clip").status_code == 404
    assert http.get(f"/api/incidents/{expired}").json()["clip_url"] is None


def test_clip_range_requests_return_206_and_the_right_bytes(site: Site) -> None:
    incident = seed_incident(site.client, clip=site.media["clip"])
    data = site.media["clip"].read_bytes()
    http = site.login("view")
    full = http.get(f"/api/incidents/{incident}/clip")
    assert full.status_code == 200 and full.headers["accept-ranges"] == "bytes"
    assert full.headers["content-type"] == "video/mp4"
    part = http.get(f"/api/incidents/{incident}/clip", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    assert part.content == data[100:1100]
    tail = http.get(f"/api/incidents/{incident}/clip", headers={"Range": "bytes=-500"})
    assert tail.status_code == 206 and tail.content == data[-500:]
    bad = http.get(f"/api/incidents/{incident}/clip", headers={"Range": f"bytes={len(data) + 10}-"})
    assert bad.status_code == 416
    assert data[4:8] == b"ftyp" and data.find(b"moov") < data.find(b"mdat")  # faststart: playable while loading


def test_no_secret_ever_leaves_the_server(site: Site) -> None:
    incident = seed_incident(site.client, clip=site.media["clip"], failed_speaker=True)
    publish_camera(site.client, "gate", site.media["live"], online=False)
    site.client.hset("vm:camera:gate", "url", f"rtsp://admin:{SECRET}@10.0.0.5:554/stream1")  # an engine forgot
    http = site.login("admin")
    bodies = [
        http.get(path).text
        for path in (
            "/api/cameras",
            "/api/cameras/gate",
            "/api/cameras/square",
            "/api/incidents",
            f"/api/incidents/{incident}",
            "/api/me",
            "/api/users",
            "/metrics",
            "/openapi.json",
            "/",
            f"/incidents/{incident}",
        )
    ]
    with http.stream("GET", "/api/events") as stream:
        chunks = stream.iter_text()
        bodies.append(next(chunks) + next(chunks))
    assert all(SECRET not in body for body in bodies)
    assert all(str(site.media["clip"].parent) not in body for body in bodies)  # no server paths either
    cam = http.get("/api/cameras/gate").json()
    assert cam["url"] == "rtsp://***@10.0.0.5:554/stream1" and not cam["online"]
    assert "***@10.0.0.5" in cam["last_error"]
    detail = http.get(f"/api/incidents/{incident}").json()
    assert detail["details"]["password"] == "***" and detail["announcements_failed"] == 1


def test_cameras_and_incident_list_filters_newest_first_paginated(site: Site) -> None:
    now = time.time()
    ids = [seed_incident(site.client, ts=now - 60 - 3600 * i, camera="gate" if i % 2 else "square") for i in range(7)]
    offline = seed_incident(site.client, kind="camera_offline", ts=now - 10, close=False)
    operator = site.login("oper")
    operator.post(f"/api/incidents/{ids[1]}/acknowledge")

    cams = {c["name"]: c for c in operator.get("/api/cameras").json()}
    assert cams["gate"]["online"] and cams["gate"]["people"] == 3 and cams["gate"]["open_incidents"] == 1
    assert not cams["square"]["reporting"] and not cams["square"]["online"]
    detail = operator.get("/api/cameras/gate").json()
    assert detail["zone_shapes"] == [
        {"name": "门口", "points": [[0.1, 0.5], [0.6, 0.5], [0.6, 0.95], [0.1, 0.95]], "relative": True}
    ]
    assert operator.get("/api/cameras/nowhere").status_code == 404

    def listing(**params: str) -> list[str]:
        return [i["id"] for i in operator.get("/api/incidents", params=params).json()["items"]]

    assert listing() == [offline, *ids]
    assert listing(camera="square") == ids[0::2]
    assert listing(kind="camera_offline") == [offline]
    assert listing(status="open") == [offline]
    assert listing(status="acknowledged") == [ids[1]]
    assert listing(status="closed") == ids, "every ended incident, the acknowledged one included"
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now - 3600 * 3 - 60))
    until = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now - 3600 * 1 + 60))
    assert listing(since=since, until=until) == ids[1:4]
    page1 = operator.get("/api/incidents", params={"limit": 3}).json()
    page3 = operator.get("/api/incidents", params={"limit": 3, "offset": 6}).json()
    assert [i["id"] for i in page1["items"]] == [offline, *ids[:2]] and page1["next_offset"] == 3
    assert [i["id"] for i in page3["items"]] == ids[5:] and page3["next_offset"] is None
    row = page1["items"][1]
    assert row["duration_s"] == 30.0 and row["peak_count"] == 7 and row["announcements_ok"] == 1
    assert operator.get("/api/incidents", params={"status": "bogus"}).status_code == 422


def test_events_stream_new_incidents_and_status_changes(site: Site) -> None:
    http = site.login("oper")
    seen: list[tuple[str, dict[str, object]]] = []
    done = threading.Event()

    def read() -> None:
        with http.stream("GET", "/api/events") as res:
            assert res.headers["content-type"].startswith("text/event-stream")
            event = ""
            for line in res.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    seen.append((event, json.loads(line[6:])))
                    if event == "incident" and seen[-1][1]["type"] == "incident_acknowledged":
                        done.set()
                        return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.5)
    incident = seed_incident(site.client, close=False)
    site.login("oper").post(f"/api/incidents/{incident}/acknowledge")
    assert done.wait(10), seen
    incident_events = [(d["type"], d["id"]) for e, d in seen if e == "incident"]
    assert ("incident_opened", incident) in incident_events
    assert incident_events[-1] == ("incident_acknowledged", incident)
    cameras = {d["name"]: d for e, d in seen if e == "camera"}
    assert cameras["gate"]["people"] == 3 and cameras["gate"]["online"]
    acked = next(d for e, d in seen if e == "incident" and d["type"] == "incident_acknowledged")
    assert acked["incident"]["status"] == "acknowledged"  # type: ignore[index]


def test_metrics_from_redis_and_engine(site: Site) -> None:
    seed_incident(site.client, failed_speaker=True)
    seed_incident(site.client, kind="camera_offline", close=False)
    site.metrics.detection("gate", 0.4)
    site.metrics.announcement("horn1", False, 2.0)
    text = site.login("view").get("/metrics").text
    for line in (
        'vm_camera_online{camera="gate"} 1.0',
        'vm_camera_people{camera="gate"} 3.0',
        'vm_camera_detect_fps{camera="gate"} 2.0',
        'vm_camera_dropped_frames_total{camera="gate"} 4.0',
        'vm_camera_reporting{camera="square"} 0.0',
        'vm_incidents{kind="gathering",status="closed"} 1.0',
        'vm_incidents{kind="camera_offline",status="open"} 1.0',
        'vm_speaker_failures_total{speaker="horn2"} 1.0',
        'vm_engine_detection_latency_seconds_count{camera="gate"} 1.0',
        'vm_engine_announcement_seconds_count{result="failed",speaker="horn1"} 1.0',
        "vm_redis_up 1.0",
    ):
        assert line in text, line


def test_user_add_cli_reads_the_password_from_stdin(
    site: Site, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump({"redis_url": redis_url, "cameras": {"gate": {"url": "rtsp://h/x"}}}))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["user", "add", "李四", "--role", "operator", "-c", str(config)])
    monkeypatch.setattr(sys, "stdin", io.StringIO("li-si-password\n"))
    assert args.func(args) == 0
    assert site.login("李四", "li-si-password").get("/api/me").json()["role"] == "operator"
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert args.func(args) == 1  # too short: refused, the old password stays
    assert site.login("李四", "li-si-password").get("/api/me").status_code == 200


def test_serve_command_serves_and_stops_on_sigterm(redis_url: str, tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"redis_url": redis_url, "cameras": {"gate": {"url": "rtsp://h/x"}}}))
    with serve_command(config) as (proc, url):
        assert httpx.get(f"{url}/healthz").json()["ok"]
        assert httpx.get(f"{url}/api/incidents").status_code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def _strings(value: object) -> Iterator[str]:
    """Every string (keys included) inside a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_unknown_camera_snapshot_is_no_such_camera_and_live_pictures_are_found_by_status_record(site: Site) -> None:
    http = site.login("view")
    for url in ("/api/cameras/nowhere/snapshot", "/api/cameras/%3Cimg%20src%3Dx%3E/snapshot"):
        res = http.get(url)
        assert res.status_code == 404 and res.json()["detail"] == "no such camera", (url, res.text)
    res = http.get("/api/cameras/square/snapshot")  # known camera, nothing published yet
    assert res.status_code == 404 and res.json()["detail"] == "no live picture of this camera"
    assert http.get("/api/cameras/a%2Fb/snapshot").status_code == 404

    live = live_picture_path(site.config.data_dir, "square")
    assert live.parent == site.config.data_dir / "live" and "square" not in live.name
    assert live != live_picture_path(site.config.data_dir, "gate") and re.fullmatch(r"[0-9a-f]+\.jpg", live.name)
    shutil.copyfile(site.media["live"], live)
    publish_camera(site.client, "square", live)
    res = http.get("/api/cameras/square/snapshot")
    assert res.status_code == 200 and res.content == live.read_bytes()
    assert res.headers["content-type"] == "image/jpeg"
    (site.config.data_dir / "live" / "square.jpg").write_bytes(b"named after the camera")
    site.client.hset("vm:camera:square", "snapshot", "")
    assert http.get("/api/cameras/square/snapshot").status_code == 404  # the file comes from the record only


def test_viewers_see_media_urls_never_server_paths(site: Site) -> None:
    data_dir = str(site.config.data_dir)
    incident = seed_incident(site.client, clip=site.media["clip"], snapshot=site.media["snapshot"], failed_speaker=True)

    def leak(rec: dict[str, Any]) -> None:
        rec["details"].update(
            clip_error=f"disk_full: 12 MB free on {data_dir}",
            snapshot_error=f"OSError: [Errno 28] No space left on device: '{data_dir}/snapshots/x y.jpg'",
            source="file:///srv/videos/gate.mp4",
            nested={"files": ["/var/lib/monitor/clips/a.mp4"]},
        )
        rec["announcements"][0].update(ok=False, error="cannot read /opt/monitor/announcements/disperse.wav")
        rec.setdefault("timeline", []).append({"at": rec["opened_at"], "event": "clip", "reason": f"{data_dir}/c"})

    IncidentStore(site.client).update(incident, leak)
    publish_camera(site.client, "square", site.media["live"], online=False)
    site.client.hset("vm:camera:square", mapping={"last_error": "video file not found: /srv/videos/square.mp4",
                                                  "url": "/srv/videos/square.mp4"})  # fmt: skip
    http = site.login("view")
    bodies = {
        path: http.get(path).json()
        for path in (
            "/api/cameras",
            "/api/cameras/gate",
            "/api/cameras/square",
            "/api/incidents",
            f"/api/incidents/{incident}",
        )
    }
    for path, body in bodies.items():
        for value in _strings(body):
            assert data_dir not in value and "/srv/" not in value and "/var/" not in value, (path, value)
            assert not (value.startswith("/") and not value.startswith("/api/")), (path, value)
    detail = bodies[f"/api/incidents/{incident}"]
    assert detail["clip_url"] == f"/api/incidents/{incident}/clip"
    assert detail["snapshot_url"] == f"/api/incidents/{incident}/snapshot"
    assert "clip" not in detail and "snapshot" not in detail
    assert detail["details"]["snapshot_error"].endswith("'…/x y.jpg'")
    assert detail["details"]["source"] == "…/gate.mp4" and detail["details"]["password"] == "***"
    assert detail["announcements"][0]["error"] == "cannot read …/disperse.wav"
    square = bodies["/api/cameras/square"]
    assert square["last_error"] == "video file not found: …/square.mp4" and square["url"] == "…/square.mp4"
    assert square["snapshot_url"].startswith("/api/cameras/square/snapshot") and "snapshot" not in square
    assert strip_paths("http://root:***@10.0.0.9/axis-cgi/a.cgi, 3/5, gathering/gate/门口") == (
        "http://root:***@10.0.0.9/axis-cgi/a.cgi, 3/5, gathering/gate/门口"
    )


def test_unicode_zone_names_work_end_to_end_and_unfit_names_are_refused(site: Site) -> None:
    admin = site.login("admin")
    square = [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8]]
    res = admin.put("/api/cameras/gate/zones/%E5%B9%BF%E5%9C%BA", json={"points": square})  # 广场
    assert res.status_code == 200, res.text
    assert res.json()["saved"] == "广场"
    for zone in ("a..b", "%3Cimg%20src%3Dx%3E", "a%20b", "x..", "-x", "%2E%2E"):
        res = admin.put(f"/api/cameras/gate/zones/{zone}", json={"points": square})
        assert res.status_code == 422 and "zone name" in res.text, (zone, res.status_code, res.text)
    assert admin.put("/api/cameras/gate/zones/a%2Fb", json={"points": square}).status_code == 404
    assert "<img" not in site.config.path.read_text(encoding="utf-8")

    viewer = site.login("view")
    deadline = time.monotonic() + 5
    while True:  # the server re-reads the saved streams.yaml
        cam = viewer.get("/api/cameras/gate").json()
        if len(cam["zone_shapes"]) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [z["name"] for z in cam["zone_shapes"]] == ["门口", "广场"]
    assert cam["zones"] == {"门口": 2}
    incident = seed_incident(site.client, camera="gate")
    row = viewer.get("/api/incidents", params={"camera": "gate"}).json()["items"][0]
    assert row["id"] == incident and row["zone"] == "门口"
    assert viewer.get(f"/api/incidents/{incident}").json()["zone"] == "门口"
    assert viewer.get("/cameras/gate").status_code == 200


def test_only_an_admin_with_the_csrf_token_saves_a_zone_and_refusals_say_why(site: Site) -> None:
    path = site.config.path
    before = path.read_bytes()
    square = [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8]]
    for user in ("view", "oper"):
        assert site.login(user).put("/api/cameras/gate/zones/z", json={"points": square}).status_code == 403
    admin = site.login("admin")
    token = admin.headers.pop("X-CSRF-Token")
    assert admin.put("/api/cameras/gate/zones/z", json={"points": square}).status_code == 403
    admin.headers["X-CSRF-Token"] = token
    res = admin.put("/api/cameras/gate/zones/z", json={"points": square[:2]})
    assert res.status_code == 422 and res.json()["detail"][0]["loc"] == ["body", "points"], res.text
    res = admin.put("/api/cameras/gate/zones/z", json={"points": [[0.2, 0.2], [1.2, 0.2], [0.8, 0.8]]})
    assert res.status_code == 422
    assert res.json()["detail"] == "points must be relative coordinates between 0 and 1 (corner 2 is not)"
    assert path.read_bytes() == before

    res = admin.put("/api/cameras/gate/zones/z", json={"points": square})
    assert res.status_code == 200, res.text
    saved = res.json()
    assert saved["snippet"] == "z: {points: [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8]]}\n"
    assert saved["snippet"] in path.read_text(encoding="utf-8")
    assert [(z["name"], z["points"]) for z in saved["camera"]["zone_shapes"]][1:] == [("z", square)]

    # a file broken by hand meanwhile: the save is refused with the loader's words, not the server's paths
    path.write_text(path.read_text(encoding="utf-8").replace("data_dir:", "data_dri:"), encoding="utf-8")
    res = admin.put("/api/cameras/gate/zones/z2", json={"points": square})
    assert res.status_code == 422 and "data_dri" in res.json()["detail"], res.text
    assert str(path.parent) not in res.text


def test_serve_keeps_the_embedded_redis_it_started_running(tmp_path: Path) -> None:
    """`monitor serve` alone on a data directory starts the embedded Redis, starts it again when it dies, and stops
    it when it stops."""
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"data_dir": "./data", "cameras": {"gate": {"url": "rtsp://h/x"}}}))
    redis_dir = (tmp_path / "data" / "redis").resolve()
    with serve_command(config) as (proc, url):
        first = wait_for_server(redis_dir, None, 10)
        os.kill(first, signal.SIGKILL)
        wait_for_server(redis_dir, first, 10)
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}/healthz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert httpx.get(f"{url}/healthz").json()["ok"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert servers(redis_dir) == []
