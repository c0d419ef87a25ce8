"""pytest fixtures for real local-audio tests: a private PulseAudio daemon with a null sink, and a recorder.

Register with ``pytest_plugins = ["tests.support.pulse"]`` in the root conftest. PyAudio -> ALSA ``default`` ->
pulse plugin -> null sink ``testsink``; ``parec`` records ``testsink.monitor``. The sink runs at 16 kHz mono, the
announcement format, so nothing resamples and captured audio equals the played samples (within 1 LSB).
Every process is started here and stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
import pytest
from numpy.typing import NDArray

from tests.support.processes import stop

SINK = "testsink"
RATE = 16000
CHANNELS = 1


@dataclass(frozen=True)
class PulseServer:
    """A running test PulseAudio daemon; ``env`` is what child processes need to reach it."""

    env: dict[str, str]
    rate: int
    channels: int
    monitor: str
    dir: Path


def _pactl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["pactl", *args], env=env, capture_output=True, text=True, check=False)


def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _sink_latency_us(env: dict[str, str]) -> int | None:
    for line in _pactl(env, "list", "sinks").stdout.splitlines():
        if line.strip().startswith("Latency:"):
            return int(line.split()[1])
    return None


def _write_config(directory: Path) -> Path:
    config = directory / "test.pa"
    config.write_text(
        f"load-module module-native-protocol-unix socket={directory}/run/native auth-anonymous=1\n"
        f"load-module module-null-sink sink_name={SINK} rate={RATE} channels={CHANNELS}\n"
        f"set-default-sink {SINK}\nset-default-source {SINK}.monitor\n"
    )
    return config


@pytest.fixture(scope="session")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseServer]:
    """PulseAudio with a 16 kHz mono null sink; sets PULSE_SERVER in this process for PortAudio (2 s setup)."""
    missing = [tool for tool in ("pulseaudio", "pactl", "pacat", "parec") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: apt-get install pulseaudio pulseaudio-utils")
    directory = tmp_path_factory.mktemp("pulse")
    (directory / "run").mkdir()
    env = {
        **os.environ,
        "XDG_RUNTIME_DIR": str(directory / "run"),
        "HOME": str(directory),
        "PULSE_SERVER": f"unix:{directory}/run/native",
    }
    command = [
        "pulseaudio",
        "--daemonize=no",
        "--exit-idle-time=-1",
        "-n",
        "-F",
        str(_write_config(directory)),
        f"--log-target=file:{directory}/pulse.log",
    ]
    daemon = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    keepalive: subprocess.Popen[bytes] | None = None
    old_server = os.environ.get("PULSE_SERVER")
    try:
        if not _wait_until(lambda: _pactl(env, "info").returncode == 0, timeout=10):
            log = directory / "pulse.log"
            pytest.fail("pulseaudio did not start: " + (log.read_text() if log.exists() else "no log"))
        # Silent 10 ms-latency stream: an idle null sink renders 2 s blocks and recordings would lose their start.
        keepalive = subprocess.Popen(
            [
                "pacat",
                "--playback",
                "--latency-msec=10",
                f"--rate={RATE}",
                f"--channels={CHANNELS}",
                "--format=s16le",
                "--raw",
                "/dev/zero",
                "--client-name=keepalive",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Wait for the initial 2 s pre-render of the idle sink to drain.
        _wait_until(lambda: (lat := _sink_latency_us(env)) is not None and lat < 50_000, timeout=10)
        os.environ["PULSE_SERVER"] = env["PULSE_SERVER"]  # PortAudio reads it at PyAudio() time
        yield PulseServer(env=env, rate=RATE, channels=CHANNELS, monitor=f"{SINK}.monitor", dir=directory)
    finally:
        if old_server is None:
            os.environ.pop("PULSE_SERVER", None)
        else:
            os.environ["PULSE_SERVER"] = old_server
        if keepalive is not None:
            stop(keepalive)
        stop(daemon)


class Recorder:
    """``parec`` on the null sink's monitor while the ``with`` block runs; ``samples()`` afterwards.

    Margins are counted in recorded audio, not in wall-clock time, so a loaded machine (parec slow to start or
    to be scheduled) cannot cut them short: the block starts once ``lead_s`` of audio was captured (parec is
    connected and recording), and recording stops once ``tail_s`` more audio came in after the block (the tail of
    what PyAudio wrote may still be in the server when ``stop_stream()`` returns). The keepalive stream keeps
    the sink rendering, so the monitor always delivers audio (silence between announcements).
    """

    def __init__(
        self, server: PulseServer, path: Path, lead_s: float = 0.3, tail_s: float = 0.5, timeout_s: float = 20.0
    ) -> None:
        self.server, self.path, self.lead_s, self.tail_s, self.timeout_s = server, path, lead_s, tail_s, timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    def _bytes(self, seconds: float) -> int:
        return int(seconds * self.server.rate) * self.server.channels * 2

    def _recorded(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def __enter__(self) -> Recorder:
        with self.path.open("wb") as sink:  # the child keeps its own copy of the descriptor
            self._proc = subprocess.Popen(
                [
                    "parec",
                    "-d",
                    self.server.monitor,
                    "--latency-msec=20",
                    f"--rate={self.server.rate}",
                    f"--channels={self.server.channels}",
                    "--format=s16le",
                    "--raw",
                ],
                env=self.server.env,
                stdout=sink,
            )
        if not _wait_until(lambda: self._recorded() >= self._bytes(self.lead_s), self.timeout_s):
            raise RuntimeError(f"parec recorded {self._recorded()} bytes in {self.timeout_s} s")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        wanted = self._recorded() + self._bytes(self.tail_s)
        _wait_until(lambda: self._recorded() >= wanted, self.timeout_s)  # the comparison tells if it fell short
        if self._proc is not None:
            stop(self._proc, signal.SIGINT)

    def samples(self) -> NDArray[np.int16]:
        """Everything captured, as int16 (interleaved if the sink has several channels)."""
        return np.fromfile(self.path, dtype="<i2").astype(np.int16)


@pytest.fixture
def recorder(pulse: PulseServer, tmp_path: Path) -> Callable[[], Recorder]:
    """Factory: ``with recorder() as rec: play(...)`` then ``rec.samples()``."""
    return lambda: Recorder(pulse, tmp_path / "captured.s16")
