"""Cluster tests' world: `monitor run --node` processes, and who owns and really runs each camera."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from monitor.cluster.etcd import Etcd
from monitor.cluster.node import OWNERS
from tests.support.engine_process import start_engine
from tests.support.processes import stop

STARTED_OR_STOPPED = re.compile(r"cluster: camera (\S+) (runs on|stopped here|stops here)")


@dataclass
class EngineNode:
    """One ``monitor run --node NAME`` process; ``wrap`` runs it inside a network namespace."""

    name: str
    config: Path
    log: Path
    wrap: Callable[[list[str]], list[str]] | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = start_engine(self.config, self.log, "--no-web", "--node", self.name, wrap=self.wrap)

    def signal_group(self, sig: int) -> None:
        """Signal the engine and every process it started (SIGSTOP pauses the whole node)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the engine and everything it started; wait until it is gone."""
        self.signal_group(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)

    def text(self, since: int = 0) -> str:
        """Its log from byte ``since`` on."""
        return self.log.read_bytes()[since:].decode(errors="replace")

    def tail(self) -> str:
        return self.text()[-3000:]

    def running(self) -> set[str]:
        """The cameras its log says it runs now: started ("runs on node"), not stopped since."""
        cameras: set[str] = set()
        for camera, what in STARTED_OR_STOPPED.findall(self.text()):
            (cameras.add if what == "runs on" else cameras.discard)(camera)
        return cameras


@pytest.fixture
def engine_nodes() -> Iterator[dict[str, EngineNode]]:
    """The test's engine processes (filled in by the test); all stopped at the end."""
    started: dict[str, EngineNode] = {}
    yield started
    for node in started.values():
        if node.proc is not None:
            stop(node.proc, timeout=15)


def claims(endpoints: list[str]) -> dict[str, tuple[str, int]]:
    """Camera -> (owner, fencing token), as etcd has it."""
    etcd = Etcd(endpoints)
    try:
        return {kv.key.removeprefix(OWNERS): (kv.value.decode(), kv.create_revision) for kv in etcd.prefix(OWNERS)}
    finally:
        etcd.close()


def running_token(client: redis.Redis, camera: str) -> int:
    """The fencing token on the camera's fresh live status (0: none): who really runs it, as the store shows."""
    fence, updated = client.hmget(f"vm:camera:{camera}", "fence", "updated_ts")
    return int(fence) if fence and updated and time.time() - float(updated) < 3 else 0
