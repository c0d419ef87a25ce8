"""Notifications against a real HTTP receiver on loopback: signatures, robot formats, retries, overflow."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import TypeAdapter, ValidationError

from monitor.actions.notify import DELIVERY_HEADER as DELIVERY_HDR
from monitor.actions.notify import SIGNATURE_HEADER as SIGNATURE_HDR
from monitor.actions.notify import TIMESTAMP_HEADER as TIMESTAMP_HDR
from monitor.actions.notify import Notifier
from monitor.config.notify import NotifierConfig
from monitor.incident import Incident, iso
from tests.support.processes import free_port

DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER = DELIVERY_HDR.lower(), SIGNATURE_HDR.lower(), TIMESTAMP_HDR.lower()
SECRET = "s3cret-hook-key"
TOKEN = "robot-access-token-123"
CONFIG: TypeAdapter[NotifierConfig] = TypeAdapter(NotifierConfig)
FAST = {"backoff_s": 0.05, "backoff_max_s": 0.2, "timeout_s": 2.0}


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A real HTTP server in a thread that records POSTs and answers with scripted status codes."""

    def __init__(self, port: int = 0, statuses: list[int] | None = None, reply: bytes = b"{}") -> None:
        self.requests: list[Received] = []
        self.statuses = list(statuses or [])
        self.reply = reply
        self.gate = threading.Event()
        self.gate.set()
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.gate.wait(10)
                with receiver.arrived:
                    headers = {k.lower(): v for k, v in self.headers.items()}  # header names are case-insensitive
                    receiver.requests.append(Received(self.path, headers, body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(receiver.reply)))
                self.end_headers()
                self.wfile.write(receiver.reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Received]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= n, timeout), f"{len(self.requests)} < {n}"
            return list(self.requests)

    def stop(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    yield rx
    rx.stop()


def record(incident_id: str = "1718000000000-abc123", **changes: Any) -> Incident:
    rec: dict[str, Any] = {
        "id": incident_id,
        "kind": "gathering",
        "rule": "gathering/square_east/广场",
        "camera": "square_east",
        "zone": "广场",
        "status": "open",
        "opened_ts": 1718000000.0,
        "closed_ts": None,
        "peak_count": 5,
        "clip": "/data/clips/x.mp4",
        "snapshot": "/data/snapshots/x.jpg",
        "announcements": [],
        "details": {"min_people": 4},
    }
    rec.update(changes)
    return Incident.from_record(rec)


def test_webhook_is_signed_and_carries_the_summary(receiver: Receiver) -> None:
    cfg = CONFIG.validate_python(
        {"kind": "webhook", "url": receiver.url(), "secret": SECRET, "base_url": "https://center.example/"}
    )
    with Notifier([cfg]) as notifier:
        assert notifier.notify(record(), "opened") == 1
        (req,) = receiver.wait_for(1)
    expected = "sha256=" + hmac.new(SECRET.encode(), req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(req.headers[SIGNATURE_HEADER], expected)
    body = req.json()
    assert req.headers[TIMESTAMP_HEADER] == str(body["timestamp"])
    assert abs(body["timestamp"] - time.time()) < 30
    assert req.headers[DELIVERY_HEADER]
    assert {k: body[k] for k in ("event", "id", "kind", "camera", "zone", "status", "peak_count")} == {
        "event": "opened",
        "id": "1718000000000-abc123",
        "kind": "gathering",
        "camera": "square_east",
        "zone": "广场",
        "status": "open",
        "peak_count": 5,
    }
    assert body["opened_at"] == iso(1718000000.0) and body["closed_at"] is None
    assert body["links"]["incident"] == "https://center.example/incidents/1718000000000-abc123"
    assert body["title"] == "【聚集告警】square_east 广场 5 人"
    assert "/data/" not in req.body.decode(), "file paths stay inside the center"


def test_webhook_closed_event_and_event_filter(receiver: Receiver) -> None:
    only_closed = CONFIG.validate_python({"kind": "webhook", "url": receiver.url(), "events": ["closed"]})
    with Notifier([only_closed]) as notifier:
        assert notifier.notify(record(), "opened") == 0
        closed = record(status="closed", closed_ts=1718000400.0, peak_count=7)
        assert notifier.notify(closed, "closed") == 1
        (req,) = receiver.wait_for(1)
    body = req.json()
    assert SIGNATURE_HEADER not in req.headers  # no secret configured
    assert body["event"] == "closed" and body["status"] == "closed" and body["peak_count"] == 7
    assert body["title"] == "【聚集解除】square_east 广场 峰值 7 人"


def test_dingtalk_markdown_and_signed_url() -> None:
    rx = Receiver(reply=b'{"errcode":0,"errmsg":"ok"}')
    try:
        cfg = CONFIG.validate_python(
            {"kind": "dingtalk", "url": rx.url(f"/robot/send?access_token={TOKEN}"), "secret": SECRET}
        )
        before = int(time.time() * 1000)
        with Notifier([cfg]) as notifier:
            notifier.notify(record(), "opened")
            (req,) = rx.wait_for(1)
            assert notifier.close(5)
        assert notifier.stats().sent == 1
    finally:
        rx.stop()
    url = urlsplit(req.path)
    query = parse_qs(url.query)
    assert url.path == "/robot/send" and query["access_token"] == [TOKEN]
    timestamp = query["timestamp"][0]
    assert before <= int(timestamp) <= int(time.time() * 1000)
    digest = hmac.new(SECRET.encode(), f"{timestamp}\n{SECRET}".encode(), hashlib.sha256).digest()
    assert query["sign"] == [base64.b64encode(digest).decode()]  # parse_qs undoes the URL encoding
    body = req.json()
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "【聚集告警】square_east 广场 5 人"
    assert "【聚集告警】square_east 广场 5 人" in body["markdown"]["text"]
    assert "Gathering alert: square_east / 广场, 5 people" in body["markdown"]["text"]


def test_wecom_markdown(receiver: Receiver) -> None:
    cfg = CONFIG.validate_python({"kind": "wecom", "url": receiver.url(f"/cgi-bin/webhook/send?key={TOKEN}")})
    offline = record(kind="camera_offline", zone=None, peak_count=0)
    with Notifier([cfg]) as notifier:
        notifier.notify(offline, "opened")
        (req,) = receiver.wait_for(1)
    body = req.json()
    assert set(body) == {"msgtype", "markdown"} and body["msgtype"] == "markdown"
    assert set(body["markdown"]) == {"content"}
    assert body["markdown"]["content"].startswith("### 【摄像头离线告警】square_east\n")


def test_receiver_down_then_up_is_retried_and_never_blocks_the_caller() -> None:
    port = free_port()  # nothing listens yet: connection refused
    cfg = CONFIG.validate_python(
        {"kind": "webhook", "url": f"http://127.0.0.1:{port}/hook", "max_attempts": 20, **FAST}
    )
    notifier = Notifier([cfg])
    try:
        took = []
        for i in range(5):
            t0 = time.perf_counter()
            notifier.notify(record(f"i{i}"), "opened")
            took.append(time.perf_counter() - t0)
        assert statistics.median(took) < 0.005 and max(took) < 0.05, took  # max: slack for a busy test machine
        deadline = time.monotonic() + 5
        while notifier.stats().retries < 2:
            assert time.monotonic() < deadline, "no retries while the receiver was down"
            time.sleep(0.01)
        rx = Receiver(port)
        try:
            assert sorted(r.json()["id"] for r in rx.wait_for(5)) == [f"i{i}" for i in range(5)]
            assert notifier.close(5)
        finally:
            rx.stop()
    finally:
        notifier.close(0)
    stats = notifier.stats()
    assert (stats.sent, stats.failed, stats.pending) == (5, 0, 0) and stats.retries >= 2


def test_server_errors_are_retried_with_the_same_delivery_id() -> None:
    rx = Receiver(statuses=[500, 500, 200])
    try:
        cfg = CONFIG.validate_python({"kind": "webhook", "url": rx.url(), "secret": SECRET, **FAST})
        with Notifier([cfg]) as notifier:
            notifier.notify(record(), "opened")
            reqs = rx.wait_for(3)
            assert notifier.close(5)
        assert len({r.headers[DELIVERY_HEADER] for r in reqs}) == 1
        assert notifier.stats().sent == 1 and notifier.stats().retries == 2
    finally:
        rx.stop()


def test_client_errors_are_not_retried() -> None:
    rx = Receiver(statuses=[400])
    try:
        cfg = CONFIG.validate_python({"kind": "webhook", "url": rx.url(), **FAST})
        with Notifier([cfg]) as notifier:
            notifier.notify(record(), "opened")
            rx.wait_for(1)
            assert notifier.close(5)
        assert (notifier.stats().failed, notifier.stats().retries, len(rx.requests)) == (1, 0, 1)
    finally:
        rx.stop()


def test_full_queue_drops_the_oldest_and_counts_it() -> None:
    rx = Receiver()
    rx.gate.clear()  # the receiver holds the first request, so the worker is busy and the queue fills
    try:
        cfg = CONFIG.validate_python({"kind": "webhook", "url": rx.url(), "timeout_s": 10})
        notifier = Notifier([cfg], max_queue=3)
        notifier.notify(record("first"), "opened")
        deadline = time.monotonic() + 5
        while notifier.stats().pending:  # the worker has taken "first" and is waiting on the receiver
            assert time.monotonic() < deadline
            time.sleep(0.005)
        for i in range(5):
            notifier.notify(record(f"queued-{i}"), "opened")
        assert notifier.stats().dropped == 2 and notifier.stats().pending == 3
        rx.gate.set()
        assert notifier.close(5)
        ids = [r.json()["id"] for r in rx.wait_for(4)]
        assert ids == ["first", "queued-2", "queued-3", "queued-4"]
        assert notifier.stats().sent == 4
    finally:
        rx.stop()


def test_secrets_stay_out_of_repr_dumps_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/robot/send?access_token={TOKEN}"
    cfg = CONFIG.validate_python({"kind": "dingtalk", "url": url, "secret": SECRET, "max_attempts": 2, **FAST})
    shown = [repr(cfg), str(cfg), cfg.model_dump_json(), cfg.target]
    assert not any(SECRET in s or TOKEN in s for s in shown)
    assert cfg.target == "dingtalk:127.0.0.1"
    with caplog.at_level(logging.DEBUG, logger="monitor.actions.notify"):
        with Notifier([cfg]) as notifier:
            notifier.notify(record(), "opened")
            assert notifier.close(5)
        assert notifier.stats().failed == 1
    assert "giving up" in caplog.text
    assert SECRET not in caplog.text and TOKEN not in caplog.text


def test_config_validation() -> None:
    many: TypeAdapter[list[NotifierConfig]] = TypeAdapter(list[NotifierConfig])
    parsed = many.validate_python(
        [
            {"kind": "webhook", "url": "https://hooks.example/x", "secret": SECRET, "events": ["opened"]},
            {"kind": "dingtalk", "url": "https://oapi.dingtalk.com/robot/send?access_token=t", "at_all": True},
            {"kind": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"},
        ]
    )
    assert [c.kind for c in parsed] == ["webhook", "dingtalk", "wecom"]
    with pytest.raises(ValidationError):
        CONFIG.validate_python({"kind": "wecom", "url": "https://qyapi.weixin.qq.com/x", "secret": "s"})
    with pytest.raises(ValidationError):
        CONFIG.validate_python({"kind": "webhook", "url": "https://x.example", "unknown": 1})
    for bad in ({"url": f"ftp://x.example/?token={TOKEN}"}, {"url": "https://x.example", "secret": 12345}):
        with pytest.raises(ValidationError) as err:
            CONFIG.validate_python({"kind": "webhook", **bad})
        # value errors: the project's config loader reports their message but never the (secret) input
        assert [e["type"] for e in err.value.errors()] == ["value_error"]
