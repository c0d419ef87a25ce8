"""Keyed background jobs for the web page (blurred exports, playable copies): never run inside a request.

One worker thread per runner, so media work queues up instead of taking every core from the cameras' detection;
``nice`` lowers the worker's scheduling priority further (on Linux a thread's nice value is its own, and the
codec threads it starts inherit it). The page polls ``state`` and ``progress`` until a job is done.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

from monitor.redact import scrub

log = logging.getLogger(__name__)

JobState = Literal["running", "failed", "done"]
Report = Callable[[int, int], None]  # (done, total) units of work; total 0 = unknown


def _lower_priority(nice: int) -> None:
    """Make the calling worker thread (and the threads it starts) yield the CPU to the rest of the process."""
    if nice > 0 and hasattr(os, "setpriority"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except OSError as exc:  # not allowed in this container: run at normal priority
            log.warning("cannot lower the priority of background jobs: %s", exc)


class JobRunner:
    """Runs at most one job per key at a time on one worker thread; keeps each key's progress and last error."""

    def __init__(self, name: str, nice: int = 0) -> None:
        self.name = name
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=name, initializer=_lower_priority, initargs=(nice,)
        )
        self._jobs: dict[str, Future[object]] = {}
        self._errors: dict[str, str] = {}
        self._progress: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def state(self, key: str) -> tuple[JobState | None, str | None]:
        """``running`` (queued or running), ``failed`` with its error, ``done``, or None when never started."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not job.done():
                return "running", None
            if key in self._errors:
                return "failed", self._errors[key]
            return ("done", None) if job is not None else (None, None)

    def progress(self, key: str) -> tuple[int, int] | None:
        """(done, total) as the running job last reported it, None before its first report."""
        with self._lock:
            return self._progress.get(key)

    def start(self, key: str, work: Callable[[Report], object]) -> bool:
        """Queue ``work(report)`` unless a job for ``key`` is queued or running (False then)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not job.done():
                return False
            self._errors.pop(key, None)
            self._progress.pop(key, None)
            self._jobs[key] = self._pool.submit(self._run, key, work)
        return True

    def _run(self, key: str, work: Callable[[Report], object]) -> object:
        def report(done: int, total: int) -> None:
            with self._lock:
                self._progress[key] = (done, total)

        try:
            return work(report)
        except Exception as exc:  # reported to whoever polls, the server goes on
            with self._lock:
                self._errors[key] = scrub(f"{type(exc).__name__}: {exc}")
            log.error("%s job %s failed: %s", self.name, key, self._errors[key])
            raise
        finally:
            with self._lock:
                self._progress.pop(key, None)

    def close(self) -> None:
        """Stop taking jobs (a running one finishes)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
