"""Fixture: a real RTSP camera (GStreamer RTSP server) serving real video over loopback."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.processes import stop

SYS_PY = "/usr/bin/python3"  # Debian's Python has python3-gi; the project venv has not
SERVER = Path(__file__).with_name("rtsp_loop_server.py")


class RtspCamera:
    """One server process with one mount per stream; can be killed and restarted on the same port."""

    def __init__(self, streams: dict[str, Path]) -> None:
        self.streams = streams
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> RtspCamera:
        """Start (or restart) the server; returns once it listens."""
        args = [SYS_PY, str(SERVER), "--port", str(self.port)]
        for name, path in self.streams.items():
            args += ["--stream", f"{name}={path}"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("READY"), f"RTSP server failed to start: {line!r}"
        self.port = int(line.split()[1].rsplit(":", 1)[1])
        return self

    def url(self, name: str) -> str:
        """rtsp:// URL of one stream."""
        return f"rtsp://127.0.0.1:{self.port}/{name}"

    def sessions(self) -> int:
        """Connections the camera has open now, counted on its side (RTSP over TCP: one per session)."""
        return sum(
            1
            for c in psutil.net_connections("tcp")
            if c.laddr and c.laddr.port == self.port and c.status == psutil.CONN_ESTABLISHED
        )

    def kill(self) -> None:
        """The camera disappears: clients see the stream end, then connection refused."""
        if self.proc is not None:
            stop(self.proc, signal.SIGKILL)

    def freeze(self) -> None:
        """The camera hangs: connections stay open but no data comes (SIGSTOP)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """The hung camera carries on (SIGCONT)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop the server."""
        if self.proc is not None:
            stop(self.proc)


def gst_rtsp_available() -> bool:
    """Whether Debian's GStreamer RTSP server bindings are installed."""
    check = "import gi; gi.require_version('GstRtspServer', '1.0')"
    try:
        return subprocess.run([SYS_PY, "-c", check], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture
def rtsp_cameras() -> Iterator[Callable[[dict[str, Path]], RtspCamera]]:
    """Start RTSP servers serving the given files (as /NAME mounts); all are stopped after the test."""
    if not gst_rtsp_available():
        pytest.skip("needs: apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad}")
    started: list[RtspCamera] = []

    def start(streams: dict[str, Path]) -> RtspCamera:
        cam = RtspCamera(streams).start()
        started.append(cam)
        return cam

    yield start
    for cam in started:
        cam.close()
