"""Total deadlines for speaker operations.

A socket timeout restarts with every byte, so a device that trickles its answer one byte at a time is never
timed out by it, and an announcement's result would never reach the incident. A ``Deadline`` bounds a whole
operation instead: ``run`` executes it on a helper thread and returns (or raises DeadlineExceeded) by the deadline
whatever the operation is blocked in (a socket, DNS, PortAudio). When the deadline passes it also calls the abort
hooks the operation registered (shut its sockets down), so the helper thread does not linger either; pacing
loops check the deadline between packets.

Budgets: a playback gets its audio's duration, the backend's set-up time (``timeout_s`` and the like) and
``PLAY_MARGIN_S``; a health check gets ``min(timeout_s, HEALTH_S)``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from speakers.base import DeadlineExceeded, PlaybackInterrupted, SpeakerError, SpeakerHealth

T = TypeVar("T")

PLAY_MARGIN_S = 1.0  # on top of audio + set-up: thread start, encoding, the last packet's scheduling
HEALTH_S = 5.0  # longest health check
STOP_POLL_S = 0.05  # how often a waiting run() looks at the stop event
STOP_GRACE_S = 0.25  # after a stop, how long run() waits for the operation to end on its own
HEALTH_GRACE_S = 0.5  # a check that times its own waits (SIP OPTIONS) reports "no answer" rather than the deadline


class _Outcome(Generic[T]):
    """What the helper thread produced: a value or an exception."""

    def __init__(self) -> None:
        self.values: list[T] = []
        self.error: BaseException | None = None
        self.done = False


class Deadline:
    """A total time budget for one speaker operation; ``label`` names the speaker in the error."""

    def __init__(self, seconds: float, label: str, what: str) -> None:
        self.seconds = seconds
        self.label = label
        self.what = what
        self.end = time.monotonic() + seconds
        self._aborted = threading.Event()
        self._lock = threading.Lock()
        self._aborts: list[Callable[[], object]] = []

    @classmethod
    def for_playback(cls, label: str, audio_s: float, setup_s: float, setup: str) -> Deadline:
        """``audio_s`` (the audio's duration) + ``setup_s`` (connecting, call set-up, answers) + PLAY_MARGIN_S."""
        parts = [f"{audio_s:.1f} s of audio"] if audio_s else []
        parts += [f"{setup_s:g} s {setup}", f"{PLAY_MARGIN_S:g} s margin"]
        return cls(audio_s + setup_s + PLAY_MARGIN_S, label, " + ".join(parts))

    @property
    def expired(self) -> bool:
        return self._aborted.is_set() or time.monotonic() >= self.end

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def error(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"{self.label}: deadline of {self.seconds:.1f} s exceeded ({self.what})")

    def check(self) -> None:
        """Raise DeadlineExceeded once the deadline has passed."""
        if self.expired:
            raise self.error()

    def timeout(self, cap: float) -> float:
        """A socket timeout of at most ``cap`` that ends by the deadline; raises DeadlineExceeded once it passed."""
        self.check()
        return min(cap, max(self.end - time.monotonic(), 0.001))

    def pacer(self, stop: threading.Event) -> Callable[[float], None]:
        """A ``sleep`` for ``send_paced``: PlaybackInterrupted once ``stop`` is set, DeadlineExceeded at the end."""

        def sleep(seconds: float) -> None:
            if stop.wait(min(seconds, self.remaining())):
                raise PlaybackInterrupted(f"{self.label}: interrupted on request")
            self.check()

        return sleep

    @contextlib.contextmanager
    def aborting(self, abort: Callable[[], object]) -> Iterator[None]:
        """While the block runs, the deadline passing calls ``abort`` (e.g. shuts a socket down) to end a blocked call.

        Leave the block before closing what ``abort`` touches: the hook is never called after the block ended.
        """
        with self._lock:
            if self._aborted.is_set():
                raise self.error()
            self._aborts.append(abort)
        try:
            yield
        finally:
            with self._lock:
                self._aborts.remove(abort)

    def _abort(self) -> None:
        with self._lock:
            self._aborted.set()
            for abort in self._aborts:
                with contextlib.suppress(OSError):
                    abort()

    def run(self, operation: Callable[[], T], stop: threading.Event | None = None, grace_s: float = 0.0) -> T:
        """``operation()`` on a helper thread: its result or exception, or DeadlineExceeded by the deadline.

        ``stop`` set: the operation gets STOP_GRACE_S to end on its own (its pacing notices within a packet);
        still running then (connecting, waiting for an answer), its abort hooks run and it is waited for, up to
        the deadline, and reported as PlaybackInterrupted. So, short of the deadline, ``run`` returns only when
        the operation has ended: the next playback on the same device never overlaps with this one's remains.
        ``grace_s`` lets an operation that times its own waits by this deadline report its own, more specific
        error first. On the deadline or an interruption of the caller (Ctrl-C) the abort hooks run and the helper
        thread ends on its own, unwaited; whatever it raises then is dropped.
        """
        outcome: _Outcome[T] = _Outcome()

        def target() -> None:
            try:
                outcome.values.append(operation())
            except BaseException as exc:  # handed to the caller below
                outcome.error = exc
            outcome.done = True

        helper = threading.Thread(target=target, name=f"{threading.current_thread().name}-op", daemon=True)
        helper.start()
        end = self.end + grace_s
        try:
            stopped = self._wait(helper, stop, end)
            if stopped:
                self._abort()
                helper.join(max(0.0, end - time.monotonic()))
        except BaseException:
            self._abort()
            raise
        if not outcome.done:
            self._abort()
            raise self.error()
        if stopped and outcome.error is not None:  # whatever the aborted operation tripped over
            raise PlaybackInterrupted(f"{self.label}: interrupted on request") from outcome.error
        if outcome.error is not None:
            raise outcome.error
        return outcome.values[0]

    @staticmethod
    def _wait(helper: threading.Thread, stop: threading.Event | None, end: float) -> bool:
        """Until ``helper`` ends or ``end``; True when ``stop`` is set and it is still running STOP_GRACE_S later."""
        while (left := end - time.monotonic()) > 0:
            helper.join(left if stop is None else min(left, STOP_POLL_S))
            if not helper.is_alive():
                return False
            if stop is not None and stop.is_set():
                helper.join(min(STOP_GRACE_S, max(0.0, end - time.monotonic())))
                return helper.is_alive()
        return False


def shutdown_socket(sock: socket.socket | None) -> None:
    """Abort hook: wake a thread blocked on ``sock`` (EOF/EPIPE there) without closing the descriptor under it.

    ``socket.socket.shutdown`` also for TLS sockets: the raw shutdown, not SSLSocket's, which drops its TLS state.
    """
    if sock is not None:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def check_health(name: str, label: str, seconds: float, check: Callable[[Deadline], str | None]) -> SpeakerHealth:
    """Run ``check`` (None = healthy, else the problem) within ``seconds``; never raises."""
    deadline = Deadline(seconds, label, "health check")
    try:
        problem = deadline.run(lambda: check(deadline), grace_s=HEALTH_GRACE_S)
    except SpeakerError as exc:
        problem = str(exc)
    except (OSError, ValueError) as exc:
        problem = f"{label}: {type(exc).__name__}: {exc}"
    return SpeakerHealth(name, time.time(), problem)
