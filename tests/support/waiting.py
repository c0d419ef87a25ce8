"""Polling helpers for tests that watch a running engine."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until ``condition`` holds; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def incidents_via_cli(config_path: Path) -> list[dict[str, Any]]:
    """`monitor incidents --json` in a new process (it reads Redis back from disk when the engine is gone)."""
    out = subprocess.run(
        [sys.executable, "-m", "monitor", "incidents", "--json", "-c", str(config_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [json.loads(line) for line in out.splitlines()]
