"""`monitor serve` and the CLI while their Redis is frozen (SIGSTOP of the real server): every request that needs
Redis is answered 503 within the client's timeout, the server stays up and serves again once Redis thaws; a CLI
command ends with a one-line error instead of hanging."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from monitor.incident import Incident, new_incident_id
from monitor.store.embedded import REDIS_TIMEOUT_S
from monitor.store.incidents import IncidentStore
from monitor.store.outbox import OUTBOX_NAME, Outbox
from monitor.web.auth import Auth
from tests.support.redis_server import RedisProcess
from tests.support.web import PASSWORDS, serve_command

pytestmark = pytest.mark.slow


def test_a_frozen_redis_gets_503_not_a_hung_page_and_the_page_recovers(
    redis_process: RedisProcess, tmp_path: Path
) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"redis_url": redis_process.url, "cameras": {"gate": {"url": "rtsp://h/x"}}}))
    Auth(redis_process.client()).add_user("oper", "operator", PASSWORDS["oper"])
    with serve_command(config) as (proc, url), httpx.Client(base_url=url, timeout=30) as http:
        login = http.post("/auth/login", json={"username": "oper", "password": PASSWORDS["oper"]})
        assert login.status_code == 200, login.text
        assert http.get("/api/incidents").status_code == 200
        redis_process.signal(signal.SIGSTOP)
        try:
            for path, accept in (("/api/incidents", "application/json"), ("/", "text/html"), ("/healthz", "")):
                began = time.monotonic()
                res = http.get(path, headers={"accept": accept})
                took = time.monotonic() - began
                assert res.status_code == 503, (path, res.status_code, res.text[:200])
                assert took < 2 * REDIS_TIMEOUT_S + 1, f"{path} took {took:.1f} s"
                if path == "/api/incidents":
                    assert "Redis" in res.json()["detail"] and res.headers["retry-after"] == "5"
                elif path == "/":
                    assert "Redis" in res.text and 'http-equiv="refresh"' in res.text  # reloads itself
            assert proc.poll() is None, "the web server died"
        finally:
            redis_process.signal(signal.SIGCONT)
        deadline = time.monotonic() + 10
        while (res := http.get("/api/incidents")).status_code != 200:
            assert time.monotonic() < deadline, res.text
            time.sleep(0.2)
        assert http.get("/healthz").json()["ok"]


def test_monitor_incidents_shows_what_waits_in_the_outbox_and_says_when_redis_is_frozen(
    redis_process: RedisProcess, tmp_path: Path
) -> None:
    """Staff asking during an outage see the incidents the engine could not deliver yet, marked waiting."""
    data = tmp_path / "data"
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump({"redis_url": redis_process.url, "data_dir": str(data),
                                      "cameras": {"gate": {"url": "rtsp://h/x"}}}))  # fmt: skip
    now = time.time()
    delivered, opening = Incident(new_incident_id(now - 120), "gathering", "g", "gate", None, now - 120).opening()
    IncidentStore(redis_process.client()).apply(opening)  # in Redis; its end is not yet
    outbox = Outbox(data / OUTBOX_NAME)
    delivered, closing = delivered.change("closed", ts=now - 60, peak=6, closed_by="rule")
    outbox.put(closing, delivered)
    during, opening = Incident(new_incident_id(now - 30), "staffing", "s", "gate", "门口", now - 30).opening()
    outbox.put(opening, during)  # opened during the outage, still open
    outbox.close()
    command = [sys.executable, "-m", "monitor", "incidents", "-c", str(config), "--json"]

    listed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["id"], r["waiting"], r["closed_ts"]) for r in rows] == [
        (during.id, True, None),
        (delivered.id, True, now - 60),  # as it will be once the close is delivered
    ]
    redis_process.signal(signal.SIGSTOP)
    try:
        began = time.monotonic()
        frozen = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        took = time.monotonic() - began
    finally:
        redis_process.signal(signal.SIGCONT)
    assert frozen.returncode == 1 and "Traceback" not in frozen.stderr
    assert "Redis did not answer (TimeoutError" in frozen.stderr and "waiting in this machine's outbox" in frozen.stderr
    assert [json.loads(line)["id"] for line in frozen.stdout.splitlines()] == [during.id]  # all it can show
    assert took < 20, f"{took:.0f} s"
    assert IncidentStore(redis_process.client()).incident(delivered.id).closed_ts is None, "the CLI only reads"
