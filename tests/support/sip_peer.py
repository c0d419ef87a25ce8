"""sipp as the SIP horn under test: one call per process, RTP pointed at a UDP socket the test owns.

Scenarios live in tests/support/sip/. sipp's exit code tells whether the call went through the scenario
(0 = every expected message came, in order). Needs Debian's ``sip-tester`` package (binary ``sipp``).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import free_port, stop

SCENARIOS = Path(__file__).with_name("sip")


def sipp_available() -> bool:
    return shutil.which("sipp") is not None


@dataclass
class Sipp:
    """A running sipp UAS; ``rtp`` is the socket its SDP answer sends the caller's audio to."""

    proc: subprocess.Popen[str]
    port: int
    rtp: socket.socket
    workdir: Path

    @property
    def uri(self) -> str:
        return f"sip:horn@127.0.0.1:{self.port}"

    def wait(self, timeout: float = 10.0) -> int:
        """sipp's exit code (0: the scenario completed)."""
        return self.proc.wait(timeout)

    def errors(self) -> str:
        """sipp's stderr and error logs, for assertion messages."""
        logs = "".join(p.read_text(errors="replace") for p in self.workdir.glob("*_errors.log"))
        return logs[-3000:]

    def close(self) -> None:
        stop(self.proc, signal.SIGKILL)
        self.rtp.close()


def start_sipp(scenario: str, workdir: Path, timeout_s: int = 30) -> Sipp:
    """Start sipp with ``scenario`` (file name in tests/support/sip) on a free UDP port of 127.0.0.1."""
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    path = SCENARIOS / scenario
    uses_rtpport = 'variables="rtpport"' in path.read_text()
    for _ in range(3):  # the free port may be taken between probing and sipp binding it
        port = free_port(socket.SOCK_DGRAM)
        args = ["sipp", "-sf", str(path), "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1", "-m", "1",
                "-timeout", str(timeout_s), "-timeout_error", "-nostdin", "-trace_err"]  # fmt: skip
        if uses_rtpport:
            args += ["-set", "rtpport", str(rtp.getsockname()[1])]
        proc = subprocess.Popen(args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.2)
        if proc.poll() is None:
            return Sipp(proc, port, rtp, workdir)
    rtp.close()
    raise RuntimeError(f"sipp did not start: {proc.stderr.read() if proc.stderr else ''}")
