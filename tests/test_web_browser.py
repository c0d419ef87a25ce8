"""The control room's page in headless Chromium (Debian's, driven by Playwright): see, review, acknowledge."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.engine import Engine
from monitor.incident import Incident, new_incident_id
from monitor.store.disk import DiskGuard
from monitor.store.outbox import Outbox
from tests.support.web import Site, make_media, publish_camera, running_site, seed_incident, write_config

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]

pytestmark = pytest.mark.slow


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Debian Chromium (no Playwright browser download)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("apt-get install chromium")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


def _login(browser: Any, site: Site, user: str, password: str, path: str = "/") -> Any:
    page = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN").new_page()
    page.set_default_timeout(10_000)
    page.goto(site.url + path)
    assert "/login" in page.url  # not logged in yet: sent to the login page
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login-button")
    page.wait_for_url(site.url + path)
    return page


def _until(page: Any, script: str, arg: Any = None, timeout: float = 10.0) -> None:
    """Poll a JS expression (page.evaluate goes around the page's strict CSP; wait_for_function does not)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(script, arg):
        assert time.monotonic() < deadline, f"timed out waiting for {script}"
        time.sleep(0.1)


def test_operator_reviews_and_acknowledges_viewer_cannot(site: Site, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    incident = seed_incident(site.client, clip=site.media["clip"], snapshot=site.media["snapshot"], close=False)
    viewer = _login(browser, site, "view", "view-pass-1", "/incidents")
    viewer_row = viewer.locator(f'tr[data-id="{incident}"]')
    expect(viewer_row).to_have_attribute("data-status", "open")

    page = _login(browser, site, "oper", "oper-pass-1")
    card = page.locator('[data-camera="gate"]')
    expect(card.locator(".people-count")).to_have_text("3")
    expect(card).to_have_class(re.compile(r"\balert\b"))  # an open incident on this camera
    _until(page, "document.querySelector('[data-camera=gate] img.live-img')?.naturalWidth === 768")
    publish_camera(site.client, "gate", site.media["live"], people=6)  # the engine's next status, pushed live
    expect(card.locator(".people-count")).to_have_text("6")
    page.screenshot(path=str(tmp_path / "dashboard.png"))

    card.click()  # the camera page: its zone drawn over the live image
    page.wait_for_url(f"{site.url}/cameras/gate")
    expect(page.locator('#zones polygon[data-zone="门口"]')).to_have_count(1)
    expect(page.locator("#zones text")).to_have_text("门口: 2")
    _until(page, "document.getElementById('live-image').naturalWidth === 768")
    page.screenshot(path=str(tmp_path / "camera.png"))

    page.click("text=事件 Incidents")
    page.click(f'tr[data-id="{incident}"] a.open-link')
    page.wait_for_url(f"{site.url}/incidents/{incident}")
    expect(page.locator("#inc-status")).to_have_attribute("data-status", "open")
    _until(page, "document.getElementById('snapshot').naturalWidth > 0")
    page.evaluate("document.getElementById('clip').play()")
    _until(page, "document.getElementById('clip').currentTime > 1.0", timeout=15)
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


def test_admin_draws_a_zone_on_the_live_picture_and_saves_it(site: Site, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from monitor.config import load_config

    config_path = site.config.path
    comment = "# integrator's note kept across edits"
    config_path.write_text(comment + "\n" + config_path.read_text())
    page = _login(browser, site, "admin", "admin-pass-1", "/cameras/gate")
    _until(page, "document.getElementById('live-image').naturalWidth === 768")
    page.fill("#zone-name", "checkpoint")
    image = page.locator("#live-image").bounding_box()
    for fx, fy in [(0.1, 0.5), (0.5, 0.5), (0.5, 0.9), (0.1, 0.9)]:
        page.mouse.click(image["x"] + fx * image["width"], image["y"] + fy * image["height"])
    expect(page.locator("#zone-yaml")).to_contain_text(
        re.compile(r"^checkpoint: \{points: \[\[0\.1, 0\.5\], \[0\.(5|499), 0\.5\]")
    )
    expect(page.locator("#zones .drawing")).to_have_count(1)
    page.screenshot(path=str(tmp_path / "draw.png"))
    page.click("#zone-save")
    expect(page.locator("#zone-status")).to_contain_text("Saved checkpoint")
    text = config_path.read_text()
    assert text.startswith(comment), "the integrator's comments survive the edit"
    points = load_config(config_path).config.cameras["gate"].zones["checkpoint"].points
    assert [(round(x, 1), round(y, 1)) for x, y in points] == [(0.1, 0.5), (0.5, 0.5), (0.5, 0.9), (0.1, 0.9)]
    page.reload()  # the page outlines the saved zone from the re-read file, without a server restart
    expect(page.locator('#zones polygon[data-zone="checkpoint"]')).to_have_count(1)

    viewer = _login(browser, site, "view", "view-pass-1", "/cameras/gate")
    expect(viewer.locator("#zone-save")).to_be_hidden()
    status = viewer.evaluate(
        """async () => (await fetch("/api/cameras/gate/zones/x", {method: "PUT", body: JSON.stringify(
             {points: [[0, 0], [1, 0], [1, 1]]}), headers: {"Content-Type": "application/json",
             "X-CSRF-Token": (await (await fetch("/api/me")).json()).csrf_token}})).status"""
    )
    assert status == 403


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
        page = _login(browser, site, "oper", "oper-pass-1", "/incidents")
        row = page.locator('tr[data-status="closed"]').first
        expect(row).to_contain_text("plaza")
        row.locator("a.open-link").click()
        page.wait_for_url(re.compile(r".*/incidents/[0-9a-f-]+$"))
        page.evaluate("document.getElementById('clip').play()")
        _until(page, "document.getElementById('clip').currentTime > 1.0", timeout=15)
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
        page = _login(browser, site, "oper", "oper-pass-1")
        _until(page, "() => !document.querySelector('[data-testid=engine-health]').hidden")
        banner = page.inner_text("[data-testid=engine-health]")
        page.screenshot(path=str(tmp_path / "degraded.png"))
    assert "DEGRADED" in banner and "1 条事件变更待写入" in banner and "disk_full" in banner, banner
    engine.outbox.close()
