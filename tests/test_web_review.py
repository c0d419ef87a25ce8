"""Reviewing many incidents quickly: episodes, the timeline and bulk review, over HTTP and in headless Chromium.

The HTTP tests try what an attacker would: no login, a viewer's session, a missing or borrowed CSRF token,
oversized and malformed bodies, ids that do not exist.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from pydantic import ValidationError

from monitor.config.web import WebConfig
from monitor.store.incidents import EVENTS, IncidentStore
from tests.support.browser import login, until
from tests.support.web import Site, seed_incident

GAP_S = 120  # the default web.episode_gap_s


def seed_crowd(site: Site, start: float, count: int = 8, every_s: float = 30, length_s: float = 6) -> list[str]:
    """One crowd that keeps forming and thinning: ``count`` short incidents of one rule on 'gate', oldest first."""
    return [
        seed_incident(site.client, ts=start + n * every_s, duration_s=length_s, snapshot=site.media["snapshot"])
        for n in range(count)
    ]


def audit(site: Site, incident_id: str) -> list[tuple[str, str, str | None]]:
    record = IncidentStore(site.client).get(incident_id)
    assert record is not None
    return [(a["user"], a["action"], a["note"]) for a in record.get("audit", [])]


def test_bulk_review_refuses_anonymous_viewers_and_requests_without_the_csrf_token(site: Site) -> None:
    target = seed_incident(site.client)
    body = {"ids": [target], "action": "acknowledge"}
    anonymous = site.anonymous()
    assert anonymous.post("/api/incidents/bulk", json=body).status_code == 401
    assert anonymous.get("/api/episodes").status_code == 401
    assert anonymous.get("/api/timeline").status_code == 401
    anonymous.cookies.set("vm_session", "forged-token")
    assert anonymous.post("/api/incidents/bulk", json=body).status_code == 401

    viewer = site.login("view")
    refused = viewer.post("/api/incidents/bulk", json=body)
    assert refused.status_code == 403 and "operator" in refused.json()["detail"]

    operator = site.login("oper")
    token = operator.headers.pop("X-CSRF-Token")
    assert operator.post("/api/incidents/bulk", json=body).status_code == 403  # no token (a cross-site form)
    wrong = {"X-CSRF-Token": token[:-2] + "xx"}
    assert operator.post("/api/incidents/bulk", json=body, headers=wrong).status_code == 403
    borrowed = viewer.headers["X-CSRF-Token"]  # another session's valid token
    assert operator.post("/api/incidents/bulk", json=body, headers={"X-CSRF-Token": borrowed}).status_code == 403
    as_form = operator.post("/api/incidents/bulk", content=json.dumps(body), headers={"Content-Type": "text/plain"})
    assert as_form.status_code == 403
    assert operator.get("/api/incidents/bulk").status_code in (404, 405)  # no GET that changes state

    assert audit(site, target) == [], "nothing refused left a trace"
    assert IncidentStore(site.client).get(target)["status"] == "closed"  # type: ignore[index]


def test_bulk_review_refuses_oversized_and_malformed_bodies(site: Site) -> None:
    target = seed_incident(site.client)
    operator = site.login("oper")
    many = [f"{n:013d}-abcdef" for n in range(501)]
    bad_bodies: list[Any] = [
        {"ids": many, "action": "acknowledge"},
        {"ids": [], "action": "acknowledge"},
        {"ids": [target], "action": "delete"},
        {"ids": [target], "action": "note"},
        {"ids": [target]},
        {"ids": ["../../etc/passwd"], "action": "acknowledge"},
        {"ids": ["*"], "action": "acknowledge"},
        {"ids": [f"{target}\n"], "action": "acknowledge"},
        {"ids": ["a" * 65], "action": "acknowledge"},
        {"ids": target, "action": "acknowledge"},
        {"ids": [target], "action": "acknowledge", "note": "x" * 2001},
        [target],
    ]
    for body in bad_bodies:
        res = operator.post("/api/incidents/bulk", json=body)
        assert res.status_code == 422, (str(body)[:80], res.status_code, res.text[:200])
    assert operator.post("/api/incidents/bulk", content=b"{not json").status_code == 422
    assert audit(site, target) == []
    full = operator.post("/api/incidents/bulk", json={"ids": many[:500], "action": "false_alarm"})
    assert full.status_code == 200 and full.json()["failed"] == 500, "500 ids are allowed (all unknown here)"


def test_bulk_review_reports_each_id_and_audits_each_incident(site: Site) -> None:
    now = time.time()
    crowd = seed_crowd(site, now - 900, count=3)
    still_open = seed_incident(site.client, ts=now - 100, close=False)
    already = seed_incident(site.client, ts=now - 2000)
    operator = site.login("oper")
    assert operator.post(f"/api/incidents/{already}/acknowledge", json={}).status_code == 200
    events_before = site.client.xlen(EVENTS)
    unknown = "0000000000000-abcdef"
    ids = [*crowd, still_open, unknown, already, crowd[0]]  # crowd[0] twice: done once
    res = operator.post("/api/incidents/bulk", json={"ids": ids, "action": "acknowledge", "note": "网格员已到场"})
    assert res.status_code == 200, res.text
    answer = res.json()
    by_id = {r["id"]: r for r in answer["results"]}
    assert [r["id"] for r in answer["results"]] == [*crowd, still_open, unknown, already]
    assert answer["done"] == 4 and answer["failed"] == 2
    for done in [*crowd, still_open]:  # an ongoing incident may be acknowledged, as on its own page
        assert by_id[done] == {"id": done, "ok": True, "code": 200, "status": "acknowledged", "error": None}
        assert audit(site, done) == [("oper", "acknowledge", "网格员已到场")]
    assert by_id[unknown] == {"id": unknown, "ok": False, "code": 404, "status": None, "error": "no such incident"}
    assert by_id[already]["code"] == 409 and "already acknowledged by oper" in by_id[already]["error"]
    assert audit(site, already) == [("oper", "acknowledge", None)], "a refused one gets no second entry"
    assert IncidentStore(site.client).get(still_open)["closed_ts"] is None  # type: ignore[index]

    events = cast("list[tuple[bytes, dict[bytes, bytes]]]", site.client.xrange(EVENTS))[events_before:]
    assert sorted(f[b"id"].decode() for _, f in events) == sorted([*crowd, still_open])
    assert {f[b"type"] for _, f in events} == {b"incident_acknowledged"}
    detail = site.login("view").get(f"/api/incidents/{crowd[1]}").json()
    assert [(a["user"], a["action"], a["note"]) for a in detail["audit"]] == [("oper", "acknowledge", "网格员已到场")]

    false = operator.post("/api/incidents/bulk", json={"ids": crowd[:1], "action": "false_alarm"}).json()
    assert false["results"][0]["status"] == "false_alarm", "a reviewed incident can be re-reviewed, as on its page"


def test_episodes_group_a_rules_repeats_and_follow_the_configured_gap(site: Site) -> None:
    now = time.time()
    crowd = seed_crowd(site, now - 1200)  # 8 incidents of 6 s in 4 minutes
    later = seed_incident(site.client, ts=now - 1200 + 7 * 30 + 6 + GAP_S + 30, duration_s=6)  # past the gap
    for n in range(2):
        seed_incident(site.client, camera="square", ts=now - 3000 + n * 60, duration_s=10)
    viewer = site.login("view")
    page = viewer.get("/api/episodes").json()
    assert page["gap_s"] == GAP_S and page["next_offset"] is None
    assert [(e["camera"], e["count"]) for e in page["items"]] == [("gate", 1), ("gate", 8), ("square", 2)]
    assert page["items"][0]["id"] == later
    episode = page["items"][1]
    assert episode["id"] == crowd[0] and [i["id"] for i in episode["incidents"]] == crowd[::-1]
    assert episode["status"] == "closed" and not episode["reviewed"] and episode["span_s"] == 7 * 30 + 6
    assert episode["peak_count"] == 7 and episode["announcements_ok"] == 8

    second = viewer.get("/api/episodes", params={"limit": 1, "offset": 1}).json()
    assert [e["count"] for e in second["items"]] == [8] and second["next_offset"] == 2
    assert [e["count"] for e in viewer.get("/api/episodes", params={"camera": "square"}).json()["items"]] == [2]
    assert viewer.get("/api/episodes", params={"status": "open"}).json()["items"] == []
    assert viewer.get("/api/episodes", params={"limit": 101}).status_code == 422

    operator = site.login("oper")
    operator.post("/api/incidents/bulk", json={"ids": crowd[:7], "action": "acknowledge"})
    partly = viewer.get("/api/episodes").json()["items"][1]
    assert partly["status"] == "closed" and not partly["reviewed"], "reviewed only when all its incidents are"
    operator.post("/api/incidents/bulk", json={"ids": crowd[7:], "action": "false_alarm"})
    assert viewer.get("/api/episodes").json()["items"][1]["reviewed"]

    path = site.config.path  # the gap comes from streams.yaml and follows a saved edit
    data = yaml.safe_load(path.read_text())
    data["web"] = {"episode_gap_s": 0}
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    os.utime(path, (time.time() + 5, time.time() + 5))
    ungrouped = viewer.get("/api/episodes").json()
    assert ungrouped["gap_s"] == 0 and [e["count"] for e in ungrouped["items"]] == [1] * 11
    with pytest.raises(ValidationError):
        WebConfig(episode_gap_s=-1)


def test_timeline_lists_every_camera_and_the_incidents_in_its_window(site: Site) -> None:
    now = time.time()
    crowd = seed_crowd(site, now - 1800)
    old = seed_incident(site.client, ts=now - 3 * 3600, duration_s=60)
    reaching_in = seed_incident(site.client, camera="square", ts=now - 3600 - 300, duration_s=600)
    ongoing = seed_incident(site.client, camera="square", ts=now - 120, close=False)
    site.client.sadd("vm:cameras", "retired")  # a camera the engine once reported
    viewer = site.login("view")
    data = viewer.get("/api/timeline", params={"hours": 1}).json()
    assert data["hours"] == 1 and not data["truncated"]
    cameras = {c["name"]: c for c in data["cameras"]}
    assert list(cameras) == ["gate", "retired", "square"]
    assert [i["id"] for i in cameras["gate"]["incidents"]] == crowd, "oldest first; the one 3 h ago is outside"
    assert [(e["id"], e["incident_ids"]) for e in cameras["gate"]["episodes"]] == [(crowd[0], crowd)]
    assert [i["id"] for i in cameras["square"]["incidents"]] == [reaching_in, ongoing]
    assert cameras["square"]["episodes"] == [] and cameras["retired"]["incidents"] == []
    wide = {c["name"]: c for c in viewer.get("/api/timeline", params={"hours": 6}).json()["cameras"]}
    assert old in [i["id"] for i in wide["gate"]["incidents"]]
    for hours in (0, 169, -1, "x", 2**70):
        assert viewer.get("/api/timeline", params={"hours": hours}).status_code == 422


@pytest.mark.slow
def test_operator_reviews_a_crowds_eight_incidents_as_one_episode(site: Site, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    now = time.time()
    crowd = seed_crowd(site, now - 1200)
    square = [seed_incident(site.client, camera="square", ts=now - 5000 + n * 1000) for n in range(2)]

    viewer = login(browser, site, "view", "view-pass-1", "/incidents")
    expect(viewer.locator(f'tr.episode[data-episode="{crowd[0]}"]')).to_have_count(1)
    expect(viewer.locator("#bulk")).to_be_hidden()
    expect(viewer.locator("td.pick").first).to_be_hidden()

    page = login(browser, site, "oper", "oper-pass-1", "/incidents")
    episode = page.locator(f'tr.episode[data-episode="{crowd[0]}"]')
    expect(episode).to_have_attribute("data-count", "8")
    expect(episode.locator("button.expand")).to_have_text("\u00d78")
    expect(page.locator("#incident-list tbody tr")).to_have_count(3)  # the episode and the square's two
    for incident_id in square:
        expect(page.locator(f'tr[data-id="{incident_id}"]')).to_have_count(1)
    episode.locator("button.expand").click()
    members = page.locator(f'tr.member[data-member-of="{crowd[0]}"]')
    expect(members).to_have_count(8)
    assert members.evaluate_all("rows => rows.map(r => r.dataset.id)") == crowd[::-1]
    page.screenshot(path=str(tmp_path / "episodes.png"))

    episode.locator("input.pick-box").check()
    expect(page.locator("#bulk-count")).to_contain_text("已选 8")
    expect(members.locator("input.pick-box:checked")).to_have_count(8)
    members.nth(0).locator("input.pick-box").uncheck()  # the episode's box goes half-checked
    assert episode.locator("input.pick-box").evaluate("b => b.indeterminate")
    episode.locator("input.pick-box").check()
    page.click("#bulk-reviewed")
    expect(page.locator("#bulk-result")).to_contain_text("8 已处理 done")
    expect(members.and_(page.locator('[data-status="acknowledged"]'))).to_have_count(8)
    expect(episode).to_have_attribute("data-status", "acknowledged")
    expect(page.locator("#bulk-count")).to_contain_text("已选 0")
    for incident_id in crowd:
        assert audit(site, incident_id) == [("oper", "acknowledge", None)]
    for incident_id in square:
        assert audit(site, incident_id) == []
    expect(viewer.locator(f'tr.episode[data-episode="{crowd[0]}"]')).to_have_attribute(
        "data-status", "acknowledged"
    )  # the viewer's list followed live

    page.uncheck("#f-group")  # one row per incident again
    expect(page.locator("#incident-list tbody tr[data-id]")).to_have_count(10)
    assert "group=0" in page.url
    page.locator(f'tr[data-id="{square[0]}"] input.pick-box').check()
    page.click("#bulk-false-alarm")
    expect(page.locator(f'tr[data-id="{square[0]}"]')).to_have_attribute("data-status", "false_alarm")
    assert audit(site, square[0]) == [("oper", "false_alarm", None)]


@pytest.mark.slow
def test_timeline_draws_a_bar_per_camera_with_marks_where_incidents_happened(
    site: Site, browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    now = time.time()
    crowd = seed_crowd(site, now - 2400)  # 40 minutes ago, over 4 minutes
    single = seed_incident(site.client, camera="square", ts=now - 900, duration_s=300)
    page = login(browser, site, "view", "view-pass-1", "/timeline?hours=1")
    expect(page.locator("#tl-rows .tl-row")).to_have_count(2)
    assert page.locator("#tl-rows .tl-row").evaluate_all("rows => rows.map(r => r.dataset.camera)") == [
        "gate",
        "square",
    ]
    gate = page.locator('.tl-row[data-camera="gate"] .tl-bar')
    expect(gate.locator(".tl-mark")).to_have_count(8)
    expect(gate.locator(f'.tl-episode[data-episode="{crowd[0]}"]')).to_have_attribute("data-count", "8")
    expect(gate.locator(f'.tl-mark[data-episode="{crowd[0]}"]')).to_have_count(8)
    page.screenshot(path=str(tmp_path / "timeline.png"))

    def where(incident_id: str) -> tuple[float, float]:
        """The mark's left edge and width as fractions of its bar."""
        box = page.locator(f'.tl-mark[data-id="{incident_id}"]').bounding_box()
        bar = page.locator(f'.tl-mark[data-id="{incident_id}"]').locator("xpath=..").bounding_box()
        return (box["x"] - bar["x"]) / bar["width"], box["width"] / bar["width"]

    start = now - 3600
    for n, incident_id in enumerate(crowd):
        left, width = where(incident_id)
        assert abs(left - (now - 2400 + n * 30 - start) / 3600) < 0.01, (n, left)
        assert width < 0.01, "6 s is a few pixels"
    left, width = where(single)
    assert abs(left - 2700 / 3600) < 0.01 and abs(width - 300 / 3600) < 0.01
    assert "聚集 gathering" in (page.locator(f'.tl-mark[data-id="{single}"]').get_attribute("title") or "")

    page.evaluate("document.querySelector('.tl-mark').dataset.kept = 'yes'")  # live updates keep the nodes
    fresh = seed_incident(site.client, camera="square", ts=time.time() - 60, close=False)
    expect(page.locator(f'.tl-mark[data-id="{fresh}"]')).to_have_class("tl-mark kind-gathering status-open")
    assert page.evaluate("document.querySelector('.tl-mark').dataset.kept") == "yes"

    page.select_option("#hours", "24")
    until(page, "location.search === '?hours=24'")
    page.locator(f'.tl-mark[data-id="{single}"]').click()
    page.wait_for_url(f"{site.url}/incidents/{single}")
    expect(page.locator("#inc-status")).to_have_attribute("data-status", "closed")
