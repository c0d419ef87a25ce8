"""Stand-in Triton servers for tests: real ``tritonserver`` (pytriton's) serving the real model on the CPU.

Each server runs ``scripts/triton_standin.py`` under ``.triton-venv`` (Debian's python3.11, made by
``scripts/setup.sh --test``) in its own process group on free loopback ports, so a test can SIGKILL
the whole server (tritonserver, its Python backend stub and the model process) like a crashed machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from detectors.export import ExportSettings, ensure_export
from detectors.model_fetch import ensure_default_model
from detectors.triton import parse_batch_metrics
from detectors.triton_repo import MODEL_NAME, ServingSettings, write_repository
from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
STANDIN_PYTHON = ROOT / ".triton-venv" / "bin" / "python"
SHM = Path("/dev/shm")


@dataclass
class StandIn:
    """One running stand-in server."""

    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    metrics_port: int
    log: Path

    @property
    def url(self) -> str:
        """``detector.model`` for this server (HTTP)."""
        return f"http://127.0.0.1:{self.http_port}/{MODEL_NAME}"

    @property
    def grpc_url(self) -> str:
        """``detector.model`` for this server through its gRPC port."""
        return f"grpc://127.0.0.1:{self.grpc_port}/{MODEL_NAME}"

    def ready(self) -> bool:
        """Triton's own answer: server ready and the model loaded (over HTTP), and the gRPC port listening."""
        base = f"http://127.0.0.1:{self.http_port}/v2"
        return _ok(f"{base}/health/ready") and _ok(f"{base}/models/{MODEL_NAME}/ready") and _listening(self.grpc_port)

    def batching(self) -> tuple[float, float, float]:
        """(requests, inferences, executions) from Triton's Prometheus metrics."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
            return parse_batch_metrics(reply.read().decode(), MODEL_NAME)

    def kill(self) -> None:
        """SIGKILL the whole process group (no clean shutdown, as when the machine dies)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """Stop it gracefully (SIGINT; SIGKILL after 20 s)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of the group


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def _leftovers() -> set[Path]:
    """What a SIGKILLed server cannot remove: pytriton's and the Python backend's shared memory, and the
    model directory tritonserver copies to /tmp/folderXXXXXX (ignoring TMPDIR)."""
    shm = {p for p in SHM.glob("*") if p.name.startswith(("psm_", "pytrtion"))} if SHM.is_dir() else set()
    return shm | {p for p in Path("/tmp").glob("folder*") if (p / "config.pbtxt").exists()}


def require_standin() -> Path:
    """The stand-in's interpreter, or skip: ``scripts/setup.sh --test`` creates it (CI always has it)."""
    if not STANDIN_PYTHON.exists():
        pytest.skip(f"no {STANDIN_PYTHON.relative_to(ROOT)}: run scripts/setup.sh --test (Triton stand-in venv)")
    return STANDIN_PYTHON


def write_test_repository(out: Path, serving: ServingSettings) -> Path:
    """A model repository for the default model (CPU instances), as ``python -m detectors.triton_repo`` writes."""
    exported = ensure_export(ensure_default_model(ROOT / "models"), ExportSettings("onnx", dynamic=True))
    write_repository(out, exported, serving)
    return out


def start_standin(repo: Path, workdir: Path, timeout: float = 180) -> StandIn:
    """Start one server on free ports and wait until its model is ready."""
    python = require_standin()
    workdir.mkdir(parents=True, exist_ok=True)
    http, grpc, metrics = free_port(), free_port(), free_port()
    args = [
        str(python), str(ROOT / "scripts" / "triton_standin.py"), "--repo", str(repo),
        "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
        "--workspace", str(workdir / "workspace"),
    ]  # fmt: skip
    log = workdir / "standin.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=out, start_new_session=True)
    server = StandIn(proc, http, grpc, metrics, log)
    deadline = time.monotonic() + timeout
    while not server.ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            tail = log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"Triton stand-in did not become ready (exit {proc.poll()}):\n{tail}")
        time.sleep(0.25)
    return server


@contextlib.contextmanager
def standins(repo: Path, root: Path, count: int) -> Iterator[list[StandIn]]:
    """``count`` running servers for the block; every one stopped after, and the leftovers that appeared
    meanwhile removed."""
    servers: list[StandIn] = []
    before = _leftovers()
    try:
        for i in range(count):
            servers.append(start_standin(repo, root / f"triton{i}"))
        yield servers
    finally:
        for server in servers:
            server.stop()
        for path in _leftovers() - before:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
