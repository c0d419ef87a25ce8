"""Announcements: one playback queue per speaker, so a slow or dead speaker delays no other.

Per speaker, jobs are played one at a time (never overlapping) in priority order, FIFO within a priority. A job
that waited longer than its deadline is dropped: a "please disperse" minutes late is worse than none. A job
of higher priority than the one playing interrupts it when the backend supports it (``play(audio, stop=...)``:
SIP, HTTP, ONVIF); the interrupted playback ends early and its result says so. Other backends finish the
current announcement first, and the higher-priority job still goes before every queued lower one.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monitor.types import PlaybackResult
from speakers import PlaybackInterrupted, Speaker, SpeakerError, create_speaker, load_announcement
from speakers.audio import AnnouncementError, Pcm
from speakers.config import SpeakerConfig
from speakers.groups import SpeakerGroupError, expand_speakers

log = logging.getLogger(__name__)

CHIME_GAP_S = 0.3  # silence between the chime and the message, so they are heard as two sounds
_SEQUENCE = itertools.count()


@dataclass(frozen=True, slots=True)
class PlayJob:
    """Play ``audio`` (after ``chime``, if any) on one speaker, then report the result."""

    audio: Path
    queued_at: float
    deadline_s: float
    on_done: Callable[[PlaybackResult], None]
    priority: int = 0
    chime: Path | None = None
    seq: int = field(default_factory=lambda: next(_SEQUENCE))

    def sort_key(self) -> tuple[int, int]:
        """Highest priority first, then first come first served."""
        return (-self.priority, self.seq)


def supports_stop(speaker: Speaker) -> bool:
    """Whether ``speaker.play`` takes a ``stop`` event, i.e. can be interrupted mid-announcement."""
    try:
        return "stop" in inspect.signature(speaker.play).parameters
    except (TypeError, ValueError):
        return False


def with_chime(message: Pcm, chime: Pcm | None) -> Pcm:
    """One continuous clip: chime, a short gap, the message (one SIP call / one RTP stream, not two)."""
    if chime is None:
        return message
    gap = np.zeros(int(CHIME_GAP_S * message.rate), dtype=np.int16)
    return Pcm(np.concatenate([chime.samples, gap, message.samples]), message.rate)


class SpeakerChannel:
    """A speaker with its own priority queue and thread: plays jobs one at a time, never overlapping."""

    def __init__(self, speaker: Speaker) -> None:
        self.speaker = speaker
        self.interruptible = supports_stop(speaker)
        self._cond = threading.Condition()
        self._heap: list[tuple[tuple[int, int], PlayJob]] = []
        self._current: PlayJob | None = None
        self._stop_current = threading.Event()
        self._closing = False
        self.thread = threading.Thread(target=self._run, name=f"speaker-{speaker.name}", daemon=True)
        self.thread.start()

    def put(self, job: PlayJob) -> None:
        """Queue ``job``; interrupt the current playback if ``job`` outranks it and the backend allows it."""
        with self._cond:
            heapq.heappush(self._heap, (job.sort_key(), job))
            current = self._current
            if current is not None and job.priority > current.priority and self.interruptible:
                log.info("speaker %s: priority %d interrupts priority %d", self.speaker.name, job.priority,
                         current.priority)  # fmt: skip
                self._stop_current.set()
            self._cond.notify()

    def _next(self) -> PlayJob | None:
        with self._cond:
            while not self._heap and not self._closing:
                self._cond.wait()
            if not self._heap:
                return None
            job = heapq.heappop(self._heap)[1]
            self._current, self._stop_current = job, threading.Event()
            return job

    def _run(self) -> None:
        while (job := self._next()) is not None:
            result = self._play(job, self._stop_current)
            with self._cond:
                self._current = None
            try:
                job.on_done(result)
            except Exception:  # a broken callback must not kill the speaker's queue
                log.exception("speaker %s: on_done callback failed", self.speaker.name)

    def _play(self, job: PlayJob, stop: threading.Event) -> PlaybackResult:
        name = self.speaker.name
        started = time.time()
        waited = started - job.queued_at
        if waited > job.deadline_s:
            log.warning("speaker %s: dropped %s, waited %.1f s", name, job.audio.name, waited)
            return PlaybackResult(
                name, started, started, False, f"dropped: waited {waited:.1f} s, over the {job.deadline_s:g} s deadline"
            )
        try:
            pcm = self._load(job)
            if self.interruptible:
                self.speaker.play(pcm, stop=stop)  # type: ignore[call-arg]
            else:
                self.speaker.play(pcm)
        except PlaybackInterrupted as exc:
            ended = time.time()
            log.warning("speaker %s: %s", name, exc)
            return PlaybackResult(name, started, ended, False, f"interrupted after {ended - started:.1f} s: {exc}")
        except (SpeakerError, AnnouncementError, OSError) as exc:
            log.error("speaker %s: %s", name, exc)
            return PlaybackResult(name, started, time.time(), False, str(exc))
        log.info("speaker %s: played %s (%.1f s)", name, job.audio.name, time.time() - started)
        return PlaybackResult(name, started, time.time(), True)

    def _load(self, job: PlayJob) -> Pcm:
        rate = self.speaker.sample_rate  # speakers apply their own gain
        chime = load_announcement(job.chime, rate) if job.chime is not None else None
        return with_chime(load_announcement(job.audio, rate), chime)

    def close(self, timeout: float) -> None:
        """Finish what is queued (up to ``timeout``) and stop."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self.thread.join(timeout)


class Announcer:
    """Routes announcements to speaker channels by speaker or group name."""

    def __init__(
        self,
        configs: dict[str, SpeakerConfig],
        deadline_s: float = 60.0,
        groups: Mapping[str, Sequence[str]] | None = None,
        chime: Path | None = None,
    ) -> None:
        self.deadline_s = deadline_s
        self.groups: Mapping[str, Sequence[str]] = groups or {}
        self.chime = chime
        self.channels = {name: SpeakerChannel(create_speaker(name, cfg)) for name, cfg in configs.items()}

    def announce(
        self,
        audio: Path,
        speakers: list[str],
        on_done: Callable[[PlaybackResult], None],
        *,
        priority: int = 0,
        deadline_s: float | None = None,
        chime: Path | None = None,
    ) -> None:
        """Queue ``audio`` on each named speaker (groups expand to all members, queued at the same instant).

        ``on_done`` is called once per speaker, also for unknown names and dropped or failed playbacks, so the
        incident records every attempt. ``chime`` (or the announcer's default chime) plays first.
        """
        now = time.time()
        try:
            names = expand_speakers(speakers, self.groups)
        except SpeakerGroupError as exc:
            for name in speakers:
                on_done(PlaybackResult(name, now, now, False, str(exc)))
            return
        deadline = self.deadline_s if deadline_s is None else deadline_s
        for name in names:
            channel = self.channels.get(name)
            if channel is None:
                on_done(PlaybackResult(name, now, now, False, f"unknown speaker {name!r}"))
                continue
            channel.put(PlayJob(audio, now, deadline, on_done, priority, chime or self.chime))

    def close(self, timeout: float = 30.0) -> None:
        """Let queued announcements finish, then stop the channels."""
        for channel in self.channels.values():
            channel.close(timeout)
