"""Build the INT8 model in the background where ``precision: auto`` would run it (#15).

Other exports are built on first use; INT8 needs frames of the cameras and about a minute of CPU per size
(NNCF statistics, then the accuracy gate: bench/RESULTS.md), so the engine starts on bf16/f32 and builds it
once it has settled: ``AFTER_S`` after start, past the two minutes in which cameras calibrate their size.
The build is ``monitor export --int8`` (the command an integrator can run by hand: the frames of the cameras
that run at that size, the gate, the cache) in its own niced process group, one size at a time, so neither a
crash nor the memory NNCF takes touches the detection loop. When it ends, the engine reopens the detectors at
that size on a side thread (the loop never waits for a model to compile) and hands them to the cameras: INT8 if
the gate passed, the same precision as before, saying why, if it refused. A refusal is cached like a pass:
nothing is rebuilt at the next start. ``precision: bf16`` or ``fp32`` in streams.yaml means no background build.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("monitor.int8")

AFTER_S = 600.0  # settle first: start-up, calibration and the first incidents come before a minute of quantizing
LOOK_EVERY_S = 60.0  # then look for sizes without an INT8 model this often (a changed config or calibration)
RUNNING_POLL_S = 1.0  # while a build runs: how often its end is checked
NICE = 19


class Int8Builds:
    """Runs ``monitor export --int8 --imgsz N`` for each wanted size once, one at a time, below the engine."""

    def __init__(self, config_path: Path, log_dir: Path, after_s: float = AFTER_S) -> None:
        self.config_path = config_path
        self.log_dir = log_dir
        self.after_s = after_s
        self.started_at = time.monotonic()
        self.tried: set[int] = set()
        self._running: tuple[int, subprocess.Popen[bytes]] | None = None
        self._looked: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, wanted: Callable[[], dict[int, list[str]]], ended: Callable[[int], None]) -> None:
        """Run ``poll`` on a thread of its own (its look-ups read files; the detection loop must not wait on
        them); ``ended(size)`` runs on that thread when a build ends."""

        def run() -> None:
            while not self._stop.is_set():
                try:
                    size = self.poll(wanted)
                    if size is not None:
                        ended(size)
                except Exception:  # a bug here must not leave a build unwatched or end the engine
                    log.exception("INT8 background build")
                self._stop.wait(self._next_wait())

        self._thread = threading.Thread(target=run, name="int8-build", daemon=True)
        self._thread.start()

    def _next_wait(self) -> float:
        """Seconds until ``poll`` has something to do: a running build's end, the settling time, the next look."""
        if self._running is not None:
            return RUNNING_POLL_S
        now = time.monotonic()
        settled_at = self.started_at + self.after_s
        next_look = settled_at if self._looked is None else max(settled_at, self._looked + LOOK_EVERY_S)
        return max(0.05, next_look - now)

    @property
    def running(self) -> int | None:
        """The size being built now, if any."""
        return None if self._running is None else self._running[0]

    def poll(self, wanted: Callable[[], dict[int, list[str]]]) -> int | None:
        """Start the next build when due; returns the size whose build has just ended (else None).

        ``wanted``: the sizes whose detectors would run INT8 but have none built, with the cameras running at
        each (the build samples those only: on a cluster node, its own cameras). It is only asked when a build
        could start, and at most every ``LOOK_EVERY_S``, so its file-system look-ups cost nothing in between.
        """
        if self._running is not None:
            size, proc = self._running
            code = proc.poll()
            if code is None:
                return None
            self._running = None
            if code == 0:
                log.info("INT8 build at imgsz %d finished (log: %s)", size, self._log_path(size))
            else:  # exit 1: the gate refused it (cached) or the build failed; either way the detectors say why
                log.warning("INT8 build at imgsz %d ended with exit %d (log: %s)", size, code, self._log_path(size))
            return size
        now = time.monotonic()
        if now - self.started_at < self.after_s or (self._looked is not None and now - self._looked < LOOK_EVERY_S):
            return None
        self._looked = now
        todo = {size: cameras for size, cameras in wanted().items() if size not in self.tried and cameras}
        if todo:
            size = min(todo)
            self._start(size, todo[size])
        return None

    def _log_path(self, size: int) -> Path:
        return self.log_dir / f"int8-build-{size}.log"

    def command(self, size: int, cameras: list[str]) -> list[str]:
        """The build's command line (coreutils nice execs the CLI, same pid: no preexec_fn, which is unsafe
        in a process with threads)."""
        command = ["nice", "-n", str(NICE), sys.executable, "-m", "monitor", "export", "--int8"]
        command += ["-c", str(self.config_path), "--imgsz", str(size), "--with-parent", str(os.getpid())]
        return command + [arg for name in sorted(cameras) for arg in ("--camera", name)]

    def _start(self, size: int, cameras: list[str]) -> None:
        self.tried.add(size)  # once per engine run: a failed build is not retried in a loop
        command = self.command(size, cameras)
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with open(self._log_path(size), "wb") as out:
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stop() ends NNCF's workers too
                )
        except OSError as exc:  # a full disk or no fork: INT8 waits for the next start, detection goes on
            log.warning("INT8 build at imgsz %d not started: %s", size, exc)
            return
        self._running = (size, proc)
        log.info("INT8 build at imgsz %d started in the background (pid %d, nice %d)", size, proc.pid, NICE)

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread and a build in progress (its half-made files are in a temporary folder the cache
        ignores)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._running is None:
            return
        _size, proc = self._running
        self._running = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
