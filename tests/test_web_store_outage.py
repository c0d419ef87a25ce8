"""`monitor serve` and the CLI while their Redis is frozen (SIGSTOP of the real server): every request that needs
Redis is answered 503 within the client's timeout, the server stays up and serves again once Redis thaws; a CLI
command ends with a one-line error instead of hanging."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from monitor.store.embedded import REDIS_TIMEOUT_S
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


def test_a_cli_command_on_a_frozen_redis_ends_with_an_error(redis_process: RedisProcess, tmp_path: Path) -> None:
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump({"redis_url": redis_process.url, "cameras": {"gate": {"url": "rtsp://h/x"}}}))
    command = [sys.executable, "-m", "monitor", "incidents", "-c", str(config)]
    assert subprocess.run(command, capture_output=True, timeout=60, check=False).returncode == 0
    redis_process.signal(signal.SIGSTOP)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    finally:
        redis_process.signal(signal.SIGCONT)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("monitor: Redis did not answer: TimeoutError"), done.stderr
    assert "Traceback" not in done.stderr
