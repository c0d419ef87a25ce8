"""The web page attacked as an attacker would: open redirects after login, sessions that outlive a password reset,
rate limits dodged with X-Forwarded-For or turned into a lockout, weak passwords, anonymous /metrics and
/openapi.json, and a login page that blames the password when Redis is down. All against the real server."""

from __future__ import annotations

import argparse
import io
import select
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
import yaml

from monitor.config import load_config
from monitor.config.web import WebConfig
from monitor.web import auth as auth_module
from monitor.web.app import create_app
from monitor.web.auth import FAILURES_PER_IP, FAILURES_PER_USER_IP, password_problem, safe_next
from monitor.web.cli import register
from monitor.web.server import WebServer
from tests.support.browser import ARGS, CHROMIUM
from tests.support.processes import free_port
from tests.support.web import PASSWORDS, Site, guarded, seed_incident

GOOD = "correct-horse-battery-staple"
EVIL = [
    "/%09/evil.example/",
    "/%0a/evil.example/",
    "/%0d%0a/evil.example/",
    "//evil.example/",
    "/%2F/evil.example/",
    "%2F%2Fevil.example/",
    "/\\evil.example/",
    "/%5Cevil.example/",
    "https:evil.example",
    "https://evil.example/",
    "javascript:alert(1)",
    "/%E2%80%8B/evil.example/",  # zero-width space
]


@contextmanager
def server_with(site: Site, tmp_path: Path, **web: Any) -> Iterator[str]:
    """A second web server on the site's Redis, with ``web:`` settings from a real streams.yaml."""
    data = yaml.safe_load(site.config.path.read_text(encoding="utf-8"))
    data["web"] = web
    path = tmp_path / "web-streams.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    server = WebServer(create_app(site.client, load_config(path)), port=0).start()
    try:
        yield server.url
    finally:
        server.stop()


def _login(http: httpx.Client, user: str, password: str, **headers: str) -> httpx.Response:
    return http.post("/auth/login", json={"username": user, "password": password}, headers=headers)


def _session(url: str, user: str, password: str, **headers: str) -> httpx.Client:
    http = httpx.Client(base_url=url, timeout=10)
    res = _login(http, user, password, **headers)
    assert res.status_code == 200, res.text
    http.headers["X-CSRF-Token"] = res.json()["csrf_token"]
    return http


# --- 1. open redirect


def test_login_next_is_checked_by_the_server() -> None:
    from urllib.parse import unquote

    for payload in EVIL:
        assert safe_next(unquote(payload)) == "/", payload  # what the page sends: the query value, decoded once
        assert safe_next(payload) == "/", payload
    for good in ("/", "/incidents", "/incidents/abc?camera=gate", "/cameras/%E9%97%A8"):
        assert safe_next(good) == good
    assert safe_next(None) == "/" and safe_next("") == "/"


def test_login_answer_names_only_a_path_on_this_site(site: Site) -> None:
    http = site.anonymous()
    for payload in ["/\t/evil.example/", "/\n/evil.example/", "//evil", "/\\evil", "https:evil", " /x"]:
        res = http.post("/auth/login", json={"username": "view", "password": "view-pass-1", "next": payload})
        assert res.status_code == 200 and res.json()["next"] == "/", payload
    res = http.post("/auth/login", json={"username": "view", "password": "view-pass-1", "next": "/incidents"})
    assert res.json()["next"] == "/incidents"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("apt-get install chromium")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


def _login_page(browser: Any, url: str, query: str) -> Any:
    page = browser.new_context().new_page()
    page.set_default_timeout(10_000)
    page.route(
        "**/*", lambda route: route.abort() if "evil" in urlsplit(route.request.url).netloc else route.continue_()
    )
    page.goto(f"{url}/login{query}")
    return page


@pytest.mark.slow
def test_chromium_never_leaves_the_site_after_login(site: Site, browser: Any) -> None:
    origin = urlsplit(site.url)
    for payload in [*EVIL, "/\t/evil.example/"]:
        page = _login_page(browser, site.url, f"?next={payload}")
        page.fill("#username", "view")
        page.fill("#password", "view-pass-1")
        with page.expect_navigation():
            page.click("#login-button")
        page.wait_for_load_state()
        landed = urlsplit(page.url)
        assert (landed.scheme, landed.netloc, landed.path) == (origin.scheme, origin.netloc, "/"), (payload, page.url)
        page.context.close()
    page = _login_page(browser, site.url, "?next=%2Fincidents")  # what the page's own redirect sends
    page.fill("#username", "view")
    page.fill("#password", "view-pass-1")
    page.click("#login-button")
    page.wait_for_url(site.url + "/incidents")
    page.context.close()


# --- 2. sessions end with a password or role change, a deletion, and after their absolute lifetime


def _cli_add(tmp_path: Path, redis_url: str, name: str, role: str, password: str, monkeypatch: Any) -> int:
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump({"redis_url": redis_url, "cameras": {"gate": {"url": "rtsp://h/x"}}}))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["user", "add", name, "--role", role, "-c", str(config)])
    monkeypatch.setattr(sys, "stdin", io.StringIO(password + "\n"))
    result: int = args.func(args)
    return result


def test_password_role_change_and_deletion_end_every_session(
    site: Site, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = site.login("admin")
    assert admin.put("/api/users/kim", json={"role": "operator", "password": GOOD}).status_code == 200
    first, second = site.login("kim", GOOD), site.login("kim", GOOD)
    assert first.get("/api/me").status_code == 200 and second.get("/api/me").status_code == 200
    assert admin.put("/api/users/kim", json={"role": "operator", "password": GOOD + "-new"}).status_code == 200
    assert first.get("/api/me").status_code == 401 and second.get("/api/me").status_code == 401
    assert first.get("/api/cameras").status_code == 401

    kim = site.login("kim", GOOD + "-new")
    assert admin.put("/api/users/kim", json={"role": "viewer", "password": GOOD + "-new"}).status_code == 200
    assert kim.get("/api/me").status_code == 401  # a demotion too
    assert site.login("kim", GOOD + "-new").get("/api/me").json()["role"] == "viewer"

    kim = site.login("kim", GOOD + "-new")
    assert _cli_add(tmp_path, redis_url, "kim", "viewer", "another-long-secret", monkeypatch) == 0
    assert kim.get("/api/me").status_code == 401  # monitor user add on an existing user
    assert _login(site.anonymous(), "kim", GOOD + "-new").status_code == 401

    kim = site.login("kim", "another-long-secret")
    assert admin.delete("/api/users/kim").status_code == 204
    assert admin.put("/api/users/kim", json={"role": "admin", "password": "another-long-secret"}).status_code == 200
    assert kim.get("/api/me").status_code == 401  # re-created under the same name: the old session stays dead
    assert admin.get("/api/me").status_code == 200  # nobody else was logged out


def test_sessions_have_an_absolute_lifetime(site: Site, tmp_path: Path) -> None:
    with server_with(site, tmp_path, session_max_hours=2.5 / 3600) as url:
        http = _session(url, "view", "view-pass-1")
        assert "max-age=2" in _login(httpx.Client(base_url=url), "view", "view-pass-1").headers["set-cookie"].lower()
        cookie = {"Cookie": f"vm_session={http.cookies['vm_session']}"}  # sent by hand: the server must refuse it
        raw = httpx.Client(base_url=url, timeout=10)
        deadline = time.monotonic() + 1.8
        while time.monotonic() < deadline:  # used all the time: the sliding expiry alone would keep it alive
            assert raw.get("/api/me", headers=cookie).status_code == 200
            time.sleep(0.25)
        time.sleep(1.0)
        assert raw.get("/api/me", headers=cookie).status_code == 401
    assert WebConfig().session_max_hours == 12


# --- 3. rate limits: forwarded headers only from configured proxies, per address and per account


def test_rotating_x_forwarded_for_does_not_escape_the_limit(site: Site) -> None:
    http = site.anonymous()
    for i in range(FAILURES_PER_USER_IP):
        res = _login(
            http, "oper", "guess-guess", **{"X-Forwarded-For": f"203.0.113.{i}", "Forwarded": f"for=1.2.3.{i}"}
        )
        assert res.status_code == 401
    blocked = _login(http, "oper", "oper-pass-1", **{"X-Forwarded-For": "198.51.100.77"})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 60
    app = create_app(site.client, site.config)
    assert WebServer(app, port=0).config.proxy_headers is False  # uvicorn's default would trust 127.0.0.1


def test_an_attacker_elsewhere_cannot_lock_a_user_out(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth_module, "ACCOUNT_MAX_DELAY_S", 2)
    with server_with(site, tmp_path, trusted_proxies=["127.0.0.1"]) as url:
        http = httpx.Client(base_url=url, timeout=10)
        office, attacker = {"X-Forwarded-For": "198.51.100.7"}, {"X-Forwarded-For": "203.0.113.9"}
        assert _login(http, "admin", "admin-pass-1", **office).status_code == 200  # a known address
        codes = [_login(http, "admin", f"guess-{i}", **attacker).status_code for i in range(40)]
        assert codes[:FAILURES_PER_USER_IP] == [401] * FAILURES_PER_USER_IP and set(codes[FAILURES_PER_USER_IP:]) == {
            429
        }
        assert _login(http, "admin", "admin-pass-1", **attacker).status_code == 429  # right password, wrong place
        assert _login(http, "admin", "admin-pass-1", **office).status_code == 200  # the real admin, at once
        for i in range(FAILURES_PER_IP):  # a password spray over many accounts from one address
            _login(http, f"user{i}", "guess-guess", **{"X-Forwarded-For": "203.0.113.10"})
        assert _login(http, "view", "view-pass-1", **{"X-Forwarded-For": "203.0.113.10"}).status_code == 429
        assert _login(http, "view", "view-pass-1", **{"X-Forwarded-For": "198.51.100.8"}).status_code == 200

        # A botnet (one try per address) slows the account down: a new address waits, then gets in.
        for i in range(8):
            _login(http, "oper", "guess-guess", **{"X-Forwarded-For": f"192.0.2.{i}"})
        slowed = _login(http, "oper", "oper-pass-1", **{"X-Forwarded-For": "192.0.2.200"})
        assert slowed.status_code == 429 and 1 <= int(slowed.headers["retry-after"]) <= 2
        time.sleep(2.1)
        assert _login(http, "oper", "oper-pass-1", **{"X-Forwarded-For": "192.0.2.200"}).status_code == 200


def test_trusted_proxies_are_addresses() -> None:
    assert WebConfig(trusted_proxies=("10.0.0.0/24", "::1")).trusted_proxies == ("10.0.0.0/24", "::1")
    with pytest.raises(ValueError, match="not an IP address"):
        WebConfig(trusted_proxies=("proxy.example",))


# --- 4. passwords


def test_short_and_common_passwords_are_refused(
    site: Site, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = site.login("admin")
    for weak, why in [
        ("aaaaaaaa", "at least 12 characters"),
        ("short-pw", "at least 12 characters"),
        ("password1234", "too common"),
        ("aaaaaaaaaaaa", "too common"),
        ("qwertyuiop12", "too common"),
        ("Password1234!", "too common"),
        ("abcabcabcabc", "too common"),
        ("123456789012", "too common"),
    ]:
        res = admin.put("/api/users/eve", json={"role": "viewer", "password": weak})
        assert res.status_code == 422 and why in res.json()["detail"], (weak, res.text)
        assert _cli_add(tmp_path, redis_url, "eve", "viewer", weak, monkeypatch) == 1
        assert why in capsys.readouterr().err
    assert admin.put("/api/users/eve", json={"role": "viewer", "password": GOOD}).status_code == 200
    assert password_problem("evelyn-smith", "evelyn-smith") == "password must not be the user name"
    assert password_problem("植物园的长颈鹿喜欢吃苹果和香蕉") is None


# --- 5. /metrics and /openapi.json


def test_metrics_and_openapi_need_a_login_or_the_metrics_token(site: Site, tmp_path: Path) -> None:
    anonymous = site.anonymous()
    assert anonymous.get("/openapi.json").status_code == 401
    res = anonymous.get("/metrics")
    assert res.status_code == 401 and res.headers["www-authenticate"] == "Bearer"
    assert anonymous.get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 401
    viewer = site.login("view")
    assert "/api/incidents" in viewer.get("/openapi.json").json()["paths"]
    assert "vm_redis_up 1.0" in viewer.get("/metrics").text
    token = "prometheus-scrape-token-0123"
    with server_with(site, tmp_path, metrics_token=token) as url:
        scraper = httpx.Client(base_url=url, timeout=10)
        assert "vm_redis_up 1.0" in scraper.get("/metrics", headers={"Authorization": f"Bearer {token}"}).text
        for wrong in (f"Bearer {token}x", f"Basic {token}", token, "Bearer", f"Bearer {token[:-1]}"):
            assert scraper.get("/metrics", headers={"Authorization": wrong}).status_code == 401, wrong
        assert scraper.get("/openapi.json", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert "Bearer" in (WebConfig.model_fields["metrics_token"].description or "")
    with pytest.raises(ValueError):
        WebConfig(metrics_token="short")


# --- 6. Redis down


@pytest.fixture
def redis_down(site: Site) -> Iterator[str]:
    """The app on a Redis that does not answer (nothing listens on its port)."""
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5)
    server = WebServer(create_app(dead, site.config), port=0).start()
    try:
        yield server.url
    finally:
        server.stop()


def test_login_with_redis_down_answers_503(redis_down: str) -> None:
    http = httpx.Client(base_url=redis_down, timeout=10)
    res = _login(http, "admin", "admin-pass-1")
    assert res.status_code == 503 and "service unavailable" in res.json()["detail"]
    http.cookies.set("vm_session", "some-token")
    assert http.get("/api/me").status_code == 503


@pytest.mark.slow
def test_login_page_says_service_unavailable_with_redis_down(redis_down: str, browser: Any) -> None:
    page = _login_page(browser, redis_down, "")
    page.fill("#username", "admin")
    page.fill("#password", "admin-pass-1")
    page.click("#login-button")
    deadline = time.monotonic() + 10  # page.evaluate: wait_for_function does not run under the page's CSP
    while not (text := page.evaluate("document.getElementById('login-error').textContent")):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "Service unavailable" in text and "Wrong" not in text
    page.context.close()


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` (checked without waiting)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True


def test_clients_trickling_requests_are_cut_off_while_others_are_served(site: Site) -> None:
    """Slowloris: each byte would restart uvicorn's keep-alive timer; the request deadline ends them."""
    with guarded(site, 2.0) as fast:
        address = urlsplit(fast.url)
        tricklers = [socket.create_connection((address.hostname, address.port), timeout=5) for _ in range(20)]
        began = time.monotonic()
        for sock in tricklers:
            sock.sendall(b"GET /api/me HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        cut: dict[int, float] = {}
        with fast.anonymous() as http:
            while len(cut) < len(tricklers) and time.monotonic() - began < 10:
                for i, sock in enumerate(tricklers):
                    if i not in cut and closed_by_server(sock):
                        cut[i] = time.monotonic() - began
                    elif i not in cut:
                        sock.sendall(b"a")
                asked = time.monotonic()
                assert http.get("/api/me").status_code == 401  # answered, and at once
                assert time.monotonic() - asked < 1.0
                time.sleep(0.25)
        for sock in tricklers:
            sock.close()
    assert len(cut) == len(tricklers), f"{len(tricklers) - len(cut)} trickling clients were never cut"
    assert all(1.9 <= t <= 4.0 for t in cut.values()), sorted(cut.values())


def test_a_huge_body_is_cut_off_before_it_is_read_into_memory(site: Site) -> None:
    with guarded(site, 15.0) as fast:
        address = urlsplit(fast.url)
        sock = socket.create_connection((address.hostname, address.port), timeout=5)
        sock.sendall(b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        sock.sendall(b"Content-Length: 1000000000\r\n\r\n")
        sent, refused = 0, False
        try:
            while sent < 256 << 20:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):  # the server closed: the kernel refuses the rest
            refused = True
        sock.close()
        # cut at 1 MiB read; what the two sockets' buffers took on top varies with the kernel's autotuning
        assert refused and sent <= 64 << 20, f"{sent} bytes taken of a 1 GB body"
        with fast.anonymous() as http:
            login = http.post("/auth/login", json={"username": "view", "password": PASSWORDS["view"]})
            assert login.status_code == 200


def test_event_streams_outlive_the_request_deadline(site: Site) -> None:
    with guarded(site, 1.0) as fast, closing(fast.login("view")) as http, http.stream("GET", "/api/events") as stream:
        chunks = stream.iter_text()
        next(chunks)
        time.sleep(2.5)  # past the deadline: the request was whole long ago, the response goes on
        incident = seed_incident(site.client, ts=time.time())
        got = ""
        deadline = time.monotonic() + 10
        while incident not in got and time.monotonic() < deadline:
            got += next(chunks)
        assert incident in got
