"""Fixture: a real redis-server (Debian package) on a free loopback port, per test."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.processes import free_port, stop


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, empty Redis server that lives for one test."""
    exe = shutil.which("redis-server") or pytest.skip("apt-get install redis-server")
    for _ in range(3):  # the free port may be taken by someone else in between: retry
        port = free_port()
        proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(tmp_path),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(tmp_path / "redis.log"),
            ]
        )
        client = redis.Redis(port=port)
        for _ in range(250):
            if proc.poll() is not None:
                break
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        if proc.poll() is None:
            break
    else:
        pytest.fail("redis-server did not start: " + (tmp_path / "redis.log").read_text())
    yield f"redis://127.0.0.1:{port}/0"
    client.close()
    stop(proc)
