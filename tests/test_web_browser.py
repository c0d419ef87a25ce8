"""The control room's page in headless Chromium (Debian's, driven by Playwright): see, review, acknowledge."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from monitor.engine import Engine
from monitor.incident import Incident, new_incident_id
from monitor.store.disk import DiskGuard
from monitor.store.outbox import Outbox
from tests.support.browser import login, until
from tests.support.web import Site, make_media, publish_camera, running_site, seed_incident, write_config

pytestmark = pytest.mark.slow


def test_operator_reviews_and_acknowledges_viewer_cannot(site: Site, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    incident = seed_incident(site.client, clip=site.media["clip"], snapshot=site.media["snapshot"], close=False)
    viewer = login(browser, site, "view", "view-pass-1", "/incidents")
    viewer_row = viewer.locator(f'tr[data-id="{incident}"]')
    expect(viewer_row).to_have_attribute("data-status", "open")

    page = login(browser, site, "oper", "oper-pass-1")
    card = page.locator('[data-camera="gate"]')
    expect(card.locator(".people-count")).to_have_text("3")
    expect(card).to_have_class(re.compile(r"\balert\b"))  # an open incident on this camera
    until(page, "document.querySelector('[data-camera=gate] img.live-img')?.naturalWidth === 768")
    publish_camera(site.client, "gate", site.media["live"], people=6)  # the engine's next status, pushed live
    expect(card.locator(".people-count")).to_have_text("6")
    page.screenshot(path=str(tmp_path / "dashboard.png"))

    card.click()  # the camera page: its zone drawn over the live image
    page.wait_for_url(f"{site.url}/cameras/gate")
    expect(page.locator('#zones polygon[data-zone="门口"]')).to_have_count(1)
    expect(page.locator("#zones text")).to_have_text("门口: 2")
    until(page, "document.getElementById('live-image').naturalWidth === 768")
    page.screenshot(path=str(tmp_path / "camera.png"))

    page.click("text=事件 Incidents")
    page.click(f'tr[data-id="{incident}"] a.open-link')
    page.wait_for_url(f"{site.url}/incidents/{incident}")
    expect(page.locator("#inc-status")).to_have_attribute("data-status", "open")
    until(page, "document.getElementById('snapshot').naturalWidth > 0")
    until(page, "document.getElementById('clip').getAttribute('src') !== null")  # once it knows what plays here
    page.evaluate("document.getElementById('clip').play()")
    until(page, "document.getElementById('clip').currentTime > 1.0", timeout=15)
    assert page.evaluate("document.getElementById('clip').videoWidth") == 768

    page.click("#ack")
    expect(page.locator("#inc-status")).to_have_attribute("data-status", "acknowledged")
    expect(page.locator("#audit")).to_contain_text("acknowledge")
    page.screenshot(path=str(tmp_path / "incident.png"))
    page.click("text=事件 Incidents")
    row = page.locator(f'tr[data-id="{incident}"]')
    expect(row).to_have_attribute("data-status", "acknowledged")
    expect(row.locator(".status-cell")).to_contain_text("已确认")

    # the viewer's list changed without a reload, and the viewer has no way to act
    expect(viewer_row).to_have_attribute("data-status", "acknowledged")
    viewer.click(f'tr[data-id="{incident}"] a.open-link')
    expect(viewer.locator("#inc-status")).to_have_attribute("data-status", "acknowledged")
    expect(viewer.locator("#ack")).to_be_hidden()
    expect(viewer.locator("#false-alarm")).to_be_hidden()
    refused = viewer.evaluate(
        """async (id) => (await fetch(`/api/incidents/${id}/false_alarm`, {method: "POST",
             headers: {"X-CSRF-Token": (await (await fetch("/api/me")).json()).csrf_token}})).status""",
        incident,
    )
    assert refused == 403


HAND_WRITTEN = """\
# streams.yaml of the test village: comments, quoting, blank lines and key order must survive a save
data_dir: 'DATA_DIR'   # single-quoted

cameras:
  # the gate, seen from the shop
  gate:
    url: "rtsp://admin:SECRET@10.0.0.5:554/stream1"   # double-quoted
    zones:
      "门口": {points: [[0.1, 0.5], [0.6, 0.5], [0.6, 0.95], [0.1, 0.95]]}  # the doorway

  square: {url: rtsp://10.0.0.6/live, zones: {px: {points: [[10, 10], [300, 10], [300, 200]]}}}
"""

_DRAWN = """() => {
  const outline = document.querySelector('#zones .drawing');
  return {points: outline.getAttribute('points').trim().split(/\\s+/).filter(Boolean).length,
          corners: document.querySelectorAll('#zones circle.corner').length, tag: outline.__vmTag || null,
          door: document.querySelector('#zones polygon[data-zone="门口"]').__vmTag || null,
          name: document.getElementById('zone-name').value, page: window.__vmPage || null};
}"""


def _corners(text: str) -> list[tuple[float, float]]:
    """The corners in a YAML line, to the precision a mouse click on a picture has."""
    numbers = [round(float(n), 2) for n in re.findall(r"\d+(?:\.\d+)?", text)]
    return list(zip(numbers[::2], numbers[1::2], strict=True))


def _click_stage(page: Any, fx: float, fy: float) -> None:
    """Click at a fraction of the stage: the picture or the live video, whichever fills it."""
    stage = page.locator("#stage").bounding_box()
    page.mouse.click(stage["x"] + fx * stage["width"], stage["y"] + fy * stage["height"])


def test_admin_draws_a_zone_across_live_updates_and_saves_it_into_the_hand_written_file(
    site: Site, browser: Any, tmp_path: Path
) -> None:
    """The drawing survives the camera's live updates; the saved zone is drawn at once; streams.yaml gains one
    line and nothing else; a refused save says why in words."""
    from playwright.sync_api import expect

    from monitor.config import load_config
    from tests.support.web import SECRET

    config_path = site.config.path
    config_path.write_text(
        HAND_WRITTEN.replace("DATA_DIR", str(site.config.data_dir)).replace("SECRET", SECRET), encoding="utf-8"
    )
    before = config_path.read_text(encoding="utf-8")
    page = login(browser, site, "admin", "admin-pass-1", "/cameras/gate")
    until(page, "document.getElementById('live-image').naturalWidth === 768")
    expect(page.locator('#zones polygon[data-zone="门口"]')).to_have_count(1)
    page.evaluate("""() => { window.__vmPage = 'this load';
        document.querySelector('#zones polygon[data-zone="门口"]').__vmTag = 'door'; }""")
    page.fill("#zone-name", "检查点")
    corners = [(0.1, 0.5), (0.5, 0.5), (0.5, 0.9), (0.1, 0.9)]
    people = page.locator("#camera-facts .people-count")
    for i, (fx, fy) in enumerate(corners):
        _click_stage(page, fx, fy)
        page.evaluate("document.querySelector('#zones .drawing').__vmTag = 'drawing'")
        publish_camera(site.client, "gate", site.media["live"], people=20 + i)  # the engine's next status
        expect(people).to_have_text(str(20 + i), timeout=20_000)  # ... has reached the page
    drawn = page.evaluate(_DRAWN)
    assert drawn == {"points": 4, "corners": 4, "tag": "drawing", "door": "door", "name": "检查点", "page": "this load"}
    preview = page.inner_text("#zone-yaml")
    assert preview.startswith("检查点: {points: [[") and _corners(preview) == corners, preview
    page.screenshot(path=str(tmp_path / "draw.png"))

    page.click("#zone-save")
    expect(page.locator("#zone-status")).to_contain_text("Saved 检查点", timeout=15_000)
    expect(page.locator('#zones polygon[data-zone="检查点"]')).to_have_count(1)  # drawn as saved, no reload
    expect(page.locator("#zones text").last).to_have_text("检查点: 0")
    drawn = page.evaluate(_DRAWN)
    assert (drawn["points"], drawn["corners"], drawn["door"], drawn["page"]) == (0, 0, "door", "this load")
    after = config_path.read_text(encoding="utf-8")
    door = '      "门口": {points: [[0.1, 0.5], [0.6, 0.5], [0.6, 0.95], [0.1, 0.95]]}  # the doorway\n'
    rest = after[after.index(door) + len(door) :]
    added = rest[: rest.index("\n") + 1]
    assert added.startswith("      检查点: {points: [[") and added.endswith("]]}\n"), added
    assert _corners(added) == corners, added
    assert after == before.replace(door, door + added), "only the new zone's line was added"
    points = load_config(config_path).config.cameras["gate"].zones["检查点"].points
    assert [(round(x, 1), round(y, 1)) for x, y in points] == corners
    page.screenshot(path=str(tmp_path / "saved.png"))

    # refused saves: the server's words on the page, never "HTTP 422"; the file stays as it is
    status = page.locator("#zone-status")
    for fx, fy in corners[:3]:
        _click_stage(page, fx, fy)
    page.fill("#zone-name", "a b")
    page.click("#zone-save")
    expect(status).to_contain_text("未保存 Not saved: zone name 'a b' may only hold letters, digits")
    expect(status).to_have_class(re.compile(r"\bbad\b"))
    page.click("#zone-clear")
    for fx, fy in corners[:2]:
        _click_stage(page, fx, fy)
    page.fill("#zone-name", "two_corners")
    expect(page.locator("#zone-save")).to_be_disabled()
    page.evaluate("document.getElementById('zone-save').disabled = false")  # a stale page sends two corners anyway
    page.click("#zone-save")
    expect(status).to_contain_text("未保存 Not saved: points: List should have at least 3 items")
    assert "HTTP" not in status.inner_text()
    assert config_path.read_text(encoding="utf-8") == after
    page.screenshot(path=str(tmp_path / "refused.png"))

    viewer = login(browser, site, "view", "view-pass-1", "/cameras/gate")
    expect(viewer.locator('#zones polygon[data-zone="检查点"]')).to_have_count(1)
    expect(viewer.locator("#zone-save")).to_be_hidden()
    status_code = viewer.evaluate(
        """async () => (await fetch("/api/cameras/gate/zones/x", {method: "PUT", body: JSON.stringify(
             {points: [[0, 0], [1, 0], [1, 1]]}), headers: {"Content-Type": "application/json",
             "X-CSRF-Token": (await (await fetch("/api/me")).json()).csrf_token}})).status"""
    )
    assert status_code == 403


def test_incident_made_by_the_engine_is_reviewed_acknowledged_and_exported(
    square_mp4: Path, tmp_path: Path, redis_url: str, browser: Any, detector: Any
) -> None:
    import redis
    import yaml
    from playwright.sync_api import expect

    from monitor.config import load_config
    from monitor.engine import Engine
    from monitor.web.app import create_app
    from monitor.web.auth import Auth
    from monitor.web.server import WebServer
    from tests.support.media import CROWD, LOWER_ZONE, QUIET, cut_scenario

    scenario = cut_scenario(square_mp4, [QUIET, CROWD, QUIET], tmp_path / "scene.mp4")
    path = tmp_path / "streams.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "redis_url": redis_url,
                "data_dir": "./data",
                "clips": {"pre_roll_s": 5, "post_roll_s": 2},
                "cameras": {
                    "plaza": {
                        "url": str(scenario),
                        "speed": 2.0,
                        "loop": False,
                        "zones": {"lower": {"points": LOWER_ZONE}},
                    }
                },
                "rules": [
                    {
                        "kind": "gathering",
                        "camera": "plaza",
                        "zone": "lower",
                        "min_people": 4,
                        "dwell_s": 3,
                        "clear_s": 3,
                    }
                ],
            }
        )
    )
    Engine(load_config(path), detector=detector).run(duration_s=15)
    client = redis.Redis.from_url(redis_url)
    Auth(client).add_user("oper", "operator", "oper-pass-1")
    server = WebServer(create_app(client, load_config(path)), port=0).start()
    try:
        site = Site(server.url, client, load_config(path), {}, None)  # type: ignore[arg-type]
        page = login(browser, site, "oper", "oper-pass-1", "/incidents")
        row = page.locator('tr[data-status="closed"]').first
        expect(row).to_contain_text("plaza")
        row.locator("a.open-link").click()
        page.wait_for_url(re.compile(r".*/incidents/[0-9a-f-]+$"))
        until(page, "document.getElementById('clip').getAttribute('src') !== null")  # once it knows what plays here
        page.evaluate("document.getElementById('clip').play()")
        until(page, "document.getElementById('clip').currentTime > 1.0", timeout=15)
        assert page.evaluate("document.getElementById('clip').videoWidth") == 768
        page.click("#ack")
        expect(page.locator("#inc-status")).to_have_attribute("data-status", "acknowledged")
        page.click("#export")
        expect(page.locator("#export-link")).to_be_visible(timeout=180_000)
        href = page.locator("#export-link").get_attribute("href")
        status, kind = page.evaluate(
            "async (u) => { const r = await fetch(u); return [r.status, r.headers.get('content-type')]; }", href
        )
        assert (status, kind) == (200, "video/mp4")
        page.screenshot(path=str(tmp_path / "engine-incident.png"))
    finally:
        server.stop()
        client.close()


def test_the_dashboard_says_why_the_engine_is_degraded(
    redis_url: str, tmp_path: Path, square_mp4: Path, browser: Any
) -> None:
    """A real engine's health (an undelivered change in its outbox, a disk under the guard) on the dashboard."""
    media = make_media(square_mp4, tmp_path / "data")
    config = write_config(tmp_path / "streams.yaml", tmp_path / "data")
    engine = Engine(config)
    engine.disk = DiskGuard(tmp_path, min_free_mb=10**9)  # no disk has that much free: media stop
    engine.outbox = Outbox(tmp_path / "data" / "outbox.sqlite3")
    new = Incident(new_incident_id(time.time()), "gathering", "g", "gate", None, time.time(), peak_count=5)
    opened, change = new.opening()
    engine.outbox.put(change, opened)  # not delivered: no delivery thread runs
    with running_site(redis_url, config, media, engine_health=lambda: engine.health().to_json()) as site:
        page = login(browser, site, "oper", "oper-pass-1")
        until(page, "() => !document.querySelector('[data-testid=engine-health]').hidden")
        banner = page.inner_text("[data-testid=engine-health]")
        page.screenshot(path=str(tmp_path / "degraded.png"))
    assert "DEGRADED" in banner and "1 条事件变更待写入" in banner and "disk_full" in banner, banner
    engine.outbox.close()


_WATCH_PICTURE = """() => {
  // Tag the gate card and its picture, then watch every frame (and every src change) for an empty picture.
  const card = document.querySelector('[data-camera=gate]');
  const img = card.querySelector('img.live-img');
  card.__vmTag = 'card'; img.__vmTag = 'img';
  window.__vmEmpty = []; window.__vmSrcs = new Set([img.src]); window.__vmWatch = true;
  const check = (why) => {
    const now = document.querySelector('[data-camera=gate] img.live-img');
    if (!now || !now.complete || now.naturalWidth === 0) window.__vmEmpty.push(why + ' ' + (now ? now.src : 'gone'));
    if (now) window.__vmSrcs.add(now.src);
  };
  new MutationObserver(() => check('mutation')).observe(card, {subtree: true, attributes: true, childList: true});
  const frame = () => { if (!window.__vmWatch) return; check('frame'); requestAnimationFrame(frame); };
  requestAnimationFrame(frame);
  setInterval(() => check('timer'), 10);
}"""


def test_dashboard_cards_update_in_place_without_flicker(site: Site, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = login(browser, site, "oper", "oper-pass-1")
    card = page.locator('[data-camera="gate"]')
    until(page, "document.querySelector('[data-camera=gate] img.live-img')?.naturalWidth === 768")
    page.evaluate(_WATCH_PICTURE)
    for people in (4, 5, 6, 7, 8):
        time.sleep(1.1)  # the picture's URL carries the status time in seconds: each update brings a new one
        publish_camera(site.client, "gate", site.media["live"], people=people)
        expect(card.locator(".people-count")).to_have_text(str(people))
    # the 4 s refresh and the last status picture both load, then swap in
    until(page, "window.__vmSrcs.size >= 4", timeout=10)
    page.evaluate("window.__vmWatch = false")
    kept = page.evaluate(
        """() => { const c = document.querySelector('[data-camera=gate]');
                   return [c.__vmTag, c.querySelector('img.live-img').__vmTag,
                           document.querySelectorAll('[data-camera=gate]').length]; }"""
    )
    assert kept == ["card", "img", 1], "the card and its <img> are updated in place, not rebuilt"
    assert page.evaluate("window.__vmEmpty") == [], "the live picture was never empty while it changed"
    page.screenshot(path=str(tmp_path / "dashboard-live.png"))


def test_dashboard_shows_frame_age_and_detect_rate_against_configured(site: Site, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from monitor.store.incidents import IncidentStore

    http = site.login("view")
    cams = {c["name"]: c for c in http.get("/api/cameras").json()}
    http.close()
    assert cams["gate"]["detect_fps_configured"] == 2.0  # streams.yaml's default detect_fps

    page = login(browser, site, "oper", "oper-pass-1")
    card = page.locator('[data-camera="gate"]')
    expect(card.locator(".frame-age")).to_have_text(re.compile(r"\b\d s ago$"))
    expect(card.locator(".frame-age")).not_to_have_class(re.compile(r"\bstale\b"))
    expect(card.locator(".detect-fps")).to_contain_text("2.0/2.0 fps")

    # a frozen camera: the engine still reports, but its last frame is 30 s old and detection runs slow
    now = time.time()
    IncidentStore(site.client).publish_camera_status(
        "gate",
        {"online": 1, "people": 2, "zones": "{}", "input_fps": 0.0, "detect_fps": 1.4, "dropped": 0,
         "reconnects": 0, "last_frame_ts": now - 30, "last_error": "", "width": 768, "height": 576,
         "snapshot": str(site.media["live"]), "url": "rtsp://10.0.0.5/x", "updated_ts": now},
        ttl_s=600,
    )  # fmt: skip
    expect(card.locator(".detect-fps")).to_contain_text("1.4/2.0 fps")
    expect(card.locator(".frame-age")).to_have_text(re.compile(r"\b3\d s ago$"))
    expect(card.locator(".frame-age")).to_have_class(re.compile(r"\bstale\b"))
    assert page.evaluate("getComputedStyle(document.querySelector('[data-camera=gate] .frame-age')).color") == (
        "rgb(255, 90, 79)"
    )  # red
    page.screenshot(path=str(tmp_path / "dashboard-frozen.png"))


def test_camera_page_says_where_the_camera_is_decoded(site: Site, browser: Any) -> None:
    """A camera set to hardware decoding on a machine whose GPU is gone keeps running on the CPU: the page says so."""
    from playwright.sync_api import expect

    from monitor.store.incidents import camera_key

    why = "h264 on cpu (cuda: PermissionError: [Errno 1] Operation not permitted)"
    site.client.hset(camera_key("gate"), "decoder", why)
    http = site.login("view")
    assert http.get("/api/cameras/gate").json()["decoder"] == why
    http.close()
    page = login(browser, site, "view", "view-pass-1", "/cameras/gate")
    expect(page.locator("#camera-facts")).to_contain_text(f"解码 Decoder{why}", timeout=20_000)


def test_open_incidents_have_headers_and_audit_shows_action_labels(site: Site, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    incident = seed_incident(site.client, close=False)
    page = login(browser, site, "oper", "oper-pass-1")
    expect(page.locator(f'#open-incidents tr[data-id="{incident}"]')).to_have_count(1)
    headers = " ".join(page.locator("#open-incidents thead th").all_inner_texts())
    for word in ("Camera", "Kind", "zone", "Opened", "People", "Status"):
        assert word in headers, headers

    page.goto(f"{site.url}/incidents/{incident}")
    page.click("#ack")
    expect(page.locator("#inc-status")).to_have_attribute("data-status", "acknowledged")
    page.click("#false-alarm")
    expect(page.locator("#inc-status")).to_have_attribute("data-status", "false_alarm")
    page.fill("#note", "checked on site")
    page.click("#note-form button[type=submit]")
    expect(page.locator("#audit tbody tr")).to_have_count(3)
    actions = page.locator("#audit .audit-action").all_inner_texts()
    assert actions == ["确认 acknowledged", "误报 false alarm", "备注 note"], actions
    assert "false_alarm" not in page.inner_text("#audit")
    assert page.locator("#audit thead th").all_inner_texts()[2] == "操作 Action"


def _no_sideways_scroll(page: Any) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"page scrolls sideways: scrollWidth {widths[0]} > clientWidth {widths[1]}"


def _header_parts_apart(page: Any) -> None:
    boxes = page.evaluate(
        """() => [...document.querySelectorAll('header nav a, header #live, header #me, header #logout')]
                 .map((e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })"""
    )
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            overlap = min(a[2], b[2]) - max(a[0], b[0]) > 1 and min(a[3], b[3]) - max(a[1], b[1]) > 1
            assert not overlap, f"header items overlap: {a} {b}"


def test_narrow_screen_and_long_url_note_do_not_scroll_sideways(site: Site, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    incident = seed_incident(site.client, clip=site.media["clip"], snapshot=site.media["snapshot"], close=False)
    url = "https://example.org/" + "a-very-long-path-segment-without-spaces" * 8 + "?q=" + "x" * 200
    http = site.login("oper")
    assert http.post(f"/api/incidents/{incident}/note", json={"note": f"see {url}"}).status_code == 200
    http.close()

    page = login(browser, site, "oper", "oper-pass-1", f"/incidents/{incident}")
    expect(page.locator("#audit")).to_contain_text("a-very-long-path-segment")
    _no_sideways_scroll(page)  # a wide screen wraps the URL too
    page.set_viewport_size({"width": 390, "height": 800})
    until(page, "document.getElementById('snapshot').naturalWidth > 0")
    _no_sideways_scroll(page)
    _header_parts_apart(page)
    page.screenshot(path=str(tmp_path / "incident-390.png"), full_page=True)

    page.goto(site.url + "/")
    expect(page.locator(f'#open-incidents tr[data-id="{incident}"]')).to_have_count(1)
    until(page, "document.querySelector('[data-camera=gate] img.live-img')?.naturalWidth === 768")
    _no_sideways_scroll(page)
    _header_parts_apart(page)
    page.screenshot(path=str(tmp_path / "dashboard-390.png"), full_page=True)

    page.goto(site.url + "/incidents")
    expect(page.locator(f'tr[data-id="{incident}"]')).to_have_count(1)
    _no_sideways_scroll(page)
    _header_parts_apart(page)
