"""The speakers page on real parts: a redis-server, the web server, RTP speakers on loopback UDP sockets (one
receiving, one dead), health published by the engine's own health monitor and status reporter, last announcements
recorded through the store's incident changes; access rules tried as an attacker would; headless Chromium."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitor.config import load_config
from monitor.incident import AnnouncementResult, Incident, iso, new_incident_id
from monitor.runtime.status import StatusReporter
from monitor.store.incidents import IncidentStore, speaker_lock_key
from monitor.store.talks import SpeakerLeases
from monitor.types import PlaybackResult
from speakers import create_speaker
from speakers.health import HealthMonitor
from tests.support.browser import login, until
from tests.support.rtp_listener import RtpListener
from tests.support.waiting import wait_until
from tests.support.web import PASSWORDS, SECRET, Site, make_media, running_site


@dataclass
class SpeakerSite:
    """The web page, the receiving horn behind speaker 'live', and the incident of the failed announcement."""

    site: Site
    horn: RtpListener
    failed_incident: str


def closed_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def write_speaker_config(path: Path, data_dir: Path, live_port: int, dead_port: int) -> None:
    """Cameras gate (speaker 'live') and square (speaker 'dead'), and speakers whose config holds credentials."""
    data = {
        "data_dir": str(data_dir),
        "cameras": {
            "gate": {"url": f"rtsp://admin:{SECRET}@10.0.0.5:554/stream1", "speakers": ["live"]},
            "square": {"url": "rtsp://10.0.0.6/live", "speakers": ["dead"]},
        },
        "speakers": {
            "live": {"kind": "rtp", "host": "127.0.0.1", "port": live_port, "codec": "pcmu"},
            "dead": {"kind": "rtp", "host": "127.0.0.1", "port": dead_port, "codec": "pcmu"},
            "porch": {"kind": "http", "url": f"http://root:{SECRET}@10.0.0.9", "username": "root", "password": SECRET},
            "tower": {"kind": "onvif", "url": f"rtsp://admin:{SECRET}@10.0.0.7/audio"},
            "pager": {"kind": "sip", "uri": "sip:page@10.0.0.8", "username": "page", "password": SECRET},
        },
        "speaker_groups": {"square-all": ["dead", "live"]},
    }
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def record_announcement(site: Site, camera: str, speaker: str, ok: bool, error: str | None = None) -> str:
    """An incident on ``camera`` with one playback on ``speaker``, applied as the engine's changes are."""
    store = IncidentStore(site.client)
    ts = time.time() - 30
    incident, opened = Incident(new_incident_id(ts), "gathering", f"gathering/{camera}", camera, None, ts).opening()
    result = AnnouncementResult.of(PlaybackResult(speaker, ts + 1, ts + 3, ok, error)).to_record()
    incident, announced = incident.change("announcement", result=result)
    for change in (opened, announced):
        store.apply(change)
    return incident.id


def publish_health(site: Site, tmp_path: Path) -> None:
    """What the engine's status thread publishes: each RTP speaker checked once by the health monitor."""
    config = site.config.config.speakers
    monitor = HealthMonitor({n: create_speaker(n, config[n]) for n in ("live", "dead")}, interval_s=60).start()
    try:
        wait_until(lambda: all(h is not None for h in monitor.status().values()), 10, "both speakers checked")
        StatusReporter(IncidentStore(site.client), tmp_path, ttl_s=600).report([], monitor)
    finally:
        monitor.close()


@pytest.fixture
def speakers_site(redis_url: str, tmp_path: Path, square_mp4: Path) -> Iterator[SpeakerSite]:
    horn = RtpListener()
    media = make_media(square_mp4, tmp_path / "data")
    write_speaker_config(tmp_path / "streams.yaml", tmp_path / "data", horn.port, closed_port())
    try:
        with running_site(redis_url, load_config(tmp_path / "streams.yaml"), media) as site:
            publish_health(site, tmp_path)
            error = f"speaker 'dead': [Errno 111] Connection refused (rtsp://admin:{SECRET}@10.0.0.5/x)"
            failed = record_announcement(site, "square", "dead", False, error)
            record_announcement(site, "gate", "live", True)
            yield SpeakerSite(site, horn, failed)
    finally:
        horn.close()


def by_name(speakers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in speakers}


# ------------------------------------------------------------------------------------------------ the API


def test_speakers_list_shows_checked_health_results_and_mapping(speakers_site: SpeakerSite) -> None:
    res = speakers_site.site.login("view").get("/api/speakers")
    assert res.status_code == 200, res.text
    speakers = by_name(res.json())
    assert sorted(speakers) == ["dead", "live", "pager", "porch", "tower"]
    live, dead = speakers["live"], speakers["dead"]
    assert live["kind"] == "rtp" and live["cameras"] == ["gate"] and live["groups"] == ["square-all"]
    assert live["health"]["state"] == "ok" and live["health"]["problem"] is None and live["health"]["checked_at"]
    assert dead["health"]["state"] == "failed" and "ICMP port unreachable" in dead["health"]["problem"]
    assert speakers["porch"]["health"] == {"state": "unknown", "problem": None, "checked_at": None}
    assert live["last_announcement"]["ok"] is True and live["last_announcement"]["camera"] == "gate"
    last = dead["last_announcement"]
    assert last["ok"] is False and last["incident_id"] == speakers_site.failed_incident and last["camera"] == "square"
    assert "Connection refused" in last["error"]
    assert dead["last_test"] is None


def test_no_secret_reaches_the_speakers_list(speakers_site: SpeakerSite, tmp_path: Path) -> None:
    body = speakers_site.site.login("admin").get("/api/speakers").text
    assert SECRET not in body, "passwords in URLs, password fields and error texts are never shown"
    assert "root:" not in body and str(tmp_path) not in body, "no user information, no server paths"
    speakers = by_name(httpx.Response(200, text=body).json())
    assert speakers["porch"]["target"].startswith("http://***@10.0.0.9")
    assert speakers["tower"]["target"] == "rtsp://***@10.0.0.7/audio"
    assert "password" not in body and "username" not in body


def test_anonymous_is_refused_everywhere(speakers_site: SpeakerSite) -> None:
    anonymous = speakers_site.site.anonymous()
    assert anonymous.get("/api/speakers").status_code == 401
    assert anonymous.post("/api/speakers/live/test").status_code == 401
    forger = speakers_site.site.anonymous()
    forger.cookies.set("vm_session", "forged")
    assert forger.post("/api/speakers/live/test", headers={"X-CSRF-Token": "x"}).status_code == 401
    page = anonymous.get("/speakers", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login?next=%2Fspeakers")
    assert speakers_site.horn.packets == [], "nothing played"


def test_viewer_may_look_but_not_test(speakers_site: SpeakerSite) -> None:
    viewer = speakers_site.site.login("view")  # sends its valid CSRF token: the role alone refuses it
    res = viewer.post("/api/speakers/live/test")
    assert res.status_code == 403 and "operator" in res.json()["detail"]
    assert viewer.post("/api/speakers/nope/test").status_code == 403, "no probing for names without the role"
    assert speakers_site.horn.packets == []
    assert list(IncidentStore(speakers_site.site.client).speaker_audit()) == []


def test_operator_without_or_with_a_wrong_csrf_token_is_refused(speakers_site: SpeakerSite) -> None:
    operator = speakers_site.site.login("oper")
    token = operator.headers.pop("X-CSRF-Token")
    assert operator.post("/api/speakers/live/test").status_code == 403
    assert operator.post("/api/speakers/live/test", headers={"X-CSRF-Token": token[:-1] + "x"}).status_code == 403
    assert operator.post("/api/speakers/live/test", headers={b"X-CSRF-Token": "测试".encode()}).status_code == 403
    assert speakers_site.horn.packets == []


@pytest.mark.parametrize(
    "name", ["nope", "..", "..%2F..%2Fstreams.yaml", "live%00", "LIVE", "live%20", "%2Fetc%2Fpasswd", "x" * 64]
)
def test_unknown_speaker_is_404_whatever_the_name(speakers_site: SpeakerSite, name: str) -> None:
    res = speakers_site.site.login("oper").post(f"/api/speakers/{name}/test")
    assert res.status_code == 404, (name, res.status_code, res.text)
    if res.headers.get("content-type", "").startswith("application/json"):
        assert res.json()["detail"] in ("no such speaker", "Not Found")
    assert speakers_site.horn.packets == []


def test_overlong_name_is_refused_before_any_lookup(speakers_site: SpeakerSite) -> None:
    assert speakers_site.site.login("oper").post(f"/api/speakers/{'x' * 65}/test").status_code == 422


def test_operator_test_plays_on_the_speaker_and_is_recorded_and_audited(speakers_site: SpeakerSite) -> None:
    res = speakers_site.site.login("oper").post("/api/speakers/live/test")
    assert res.status_code == 200, res.text
    result = res.json()
    assert result["ok"] is True and result["error"] is None and result["user"] == "oper" and result["speaker"] == "live"
    assert 0.9 <= result["duration_s"] < 10, "about a second of beeps, within the deadline"
    wait_until(lambda: speakers_site.horn.announcements == 1, 5, "the horn received the test stream")
    assert len(speakers_site.horn.packets) >= 45, "1 s of 20 ms packets"
    listed = by_name(speakers_site.site.login("view").get("/api/speakers").json())
    assert listed["live"]["last_test"] == {**result, "duration_s": None}
    [audit] = IncidentStore(speakers_site.site.client).speaker_audit()
    assert (audit["user"], audit["action"], audit["speaker"], audit["ok"]) == ("oper", "speaker_test", "live", True)
    assert audit["at"] == result["at"]


def test_a_failed_test_says_why(speakers_site: SpeakerSite) -> None:
    res = speakers_site.site.login("admin").post("/api/speakers/dead/test")
    assert res.status_code == 200
    result = res.json()
    assert result["ok"] is False and "refused" in result["error"].lower() and result["user"] == "admin"
    [audit] = IncidentStore(speakers_site.site.client).speaker_audit()
    assert audit["ok"] is False and audit["speaker"] == "dead"


def test_concurrent_tests_of_one_speaker_never_overlap(speakers_site: SpeakerSite) -> None:
    site = speakers_site.site
    first: list[httpx.Response] = []
    press = threading.Thread(target=lambda: first.append(site.login("oper").post("/api/speakers/live/test")))
    second_client = site.login("admin")
    press.start()
    wait_until(lambda: bool(site.client.exists(speaker_lock_key("live"))), 10, "the first test holds the speaker")
    second = second_client.post("/api/speakers/live/test")
    press.join(30)
    assert second.status_code == 409 and "already" in second.json()["detail"]
    assert first[0].status_code == 200 and first[0].json()["ok"] is True
    assert speakers_site.horn.announcements == 1, "one stream, not two interleaved"
    assert not site.client.exists(speaker_lock_key("live")), "the speaker is free again"
    assert site.login("oper").post("/api/speakers/live/test").json()["ok"] is True


# ------------------------------------------------------------------------------------------------ the page


@pytest.mark.slow
def test_speakers_page_tests_a_speaker_and_dashboard_warns(speakers_site: SpeakerSite, browser: Any) -> None:
    site, horn = speakers_site.site, speakers_site.horn
    page = login(browser, site, "oper", PASSWORDS["oper"], "/speakers")
    live, dead = 'tr[data-speaker="live"]', 'tr[data-speaker="dead"]'
    until(page, "document.querySelectorAll('tr[data-testid=speaker-row]').length === 5")
    assert page.get_attribute(f"{live} [data-testid=speaker-health]", "data-state") == "ok"
    assert page.get_attribute(f"{dead} [data-testid=speaker-health]", "data-state") == "failed"
    assert "ICMP port unreachable" in page.inner_text(f"{dead} [data-testid=speaker-problem]")
    assert page.get_attribute('tr[data-speaker="porch"] [data-testid=speaker-health]', "data-state") == "unknown"
    last = page.locator(f"{dead} [data-testid=speaker-last]")
    assert last.get_attribute("data-ok") == "0" and "✘" in last.inner_text()
    assert last.locator("a").get_attribute("href") == f"/incidents/{speakers_site.failed_incident}"
    page.evaluate(f"() => {{ window.liveRow = document.querySelector('{live}'); }}")  # to see it is kept

    page.click(f"{live} [data-testid=test-button]")
    until(page, f"document.querySelector('{live} [data-testid=test-result]').dataset.ok === '1'", timeout=30)
    assert "✔" in page.inner_text(f"{live} [data-testid=test-result]")
    wait_until(lambda: horn.announcements == 1, 5, "the horn received RTP packets from the test")
    until(page, f"document.querySelector('{live} [data-testid=speaker-tested]').textContent.includes('oper')")
    assert page.evaluate(f"document.querySelector('{live}') === window.liveRow"), "rows are updated in place"
    assert page.get_attribute(f"{live} [data-testid=speaker-health]", "data-state") == "ok"

    viewer = login(browser, site, "view", PASSWORDS["view"], "/speakers")
    until(viewer, "document.querySelectorAll('tr[data-testid=speaker-row]').length === 5")
    assert viewer.locator("[data-testid=test-button]").count() == 0, "viewers get no test button"
    assert viewer.locator("th.test-col").is_hidden()

    # an operator talking on a speaker (its lease, as a talk takes it): everyone sees who, until it ends
    busy = f"{live} [data-testid=speaker-busy]"
    assert viewer.locator(busy).is_hidden()
    lease = SpeakerLeases(site.client, {"what": "talk", "user": "oper", "id": "t1", "since": iso(time.time()) or ""},
                          ttl_s=60)  # fmt: skip
    assert lease.acquire("live")
    until(viewer, f"!document.querySelector('{busy}').hidden", timeout=15)
    assert "talking: oper" in viewer.inner_text(busy)
    assert by_name(site.login("view").get("/api/speakers").json())["live"]["busy"]["user"] == "oper"
    lease.release()
    until(viewer, f"document.querySelector('{busy}').hidden", timeout=15)

    page.goto(site.url + "/")
    warning = '.card[data-camera="square"] [data-testid=speaker-warning]'
    until(page, f"!!document.querySelector('{warning}') && !document.querySelector('{warning}').hidden")
    text = page.inner_text(warning)
    assert "dead" in text and "last announcement failed" in text
    assert page.locator('.card[data-camera="gate"] [data-testid=speaker-warning]').is_hidden()
