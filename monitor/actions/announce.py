"""Announcements: one playback queue per speaker, so a slow or dead speaker delays no other.

Per speaker, jobs are played one at a time (never overlapping) in priority order, FIFO within a priority. A job
that waited longer than its deadline is dropped: a "please disperse" minutes late is worse than none. A job
of higher priority than the one playing interrupts it (every backend's ``play(audio, stop)`` ends within a packet
or chunk once ``stop`` is set); the interrupted playback ends early and its result says so, and the
higher-priority job goes before every queued lower one. Every playback ends by the backend's total deadline, so
a speaker that hangs reports a failure instead of holding its queue, and ``close(timeout)`` returns in time.

A live talk from the web page holds its speakers (``held``, a Redis lease, monitor/store/talks.py): a channel does
not start an announcement on a held speaker (it waits, up to the job's deadline, and plays after the talk), and an
announcement playing when a talk takes the speaker is stopped and queued again in its old place, to play whole
after the talk. The check runs every ``HELD_POLL_S``, so talk and announcement overlap for at most about that.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from monitor.types import PlaybackResult
from speakers import PlaybackInterrupted, Speaker, SpeakerError, create_speaker, load_announcement
from speakers.audio import AnnouncementError, Pcm
from speakers.config import SpeakerConfig
from speakers.groups import SpeakerGroupError, expand_speakers

log = logging.getLogger(__name__)

CHIME_GAP_S = 0.3  # silence between the chime and the message, so they are heard as two sounds
HELD_POLL_S = 0.25  # how often a channel asks whether a live talk holds its speaker
CLOSE_GRACE_S = 1.0  # close(timeout): the last part of the timeout, after the stop event was set, to wind down
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


def with_chime(message: Pcm, chime: Pcm | None) -> Pcm:
    """One continuous clip: chime, a short gap, the message (one SIP call / one RTP stream, not two)."""
    if chime is None:
        return message
    gap = np.zeros(int(CHIME_GAP_S * message.rate), dtype=np.int16)
    return Pcm(np.concatenate([chime.samples, gap, message.samples]), message.rate)


def never_held(speaker: str) -> bool:
    """No talk ever holds a speaker (an announcer without Redis)."""
    del speaker
    return False


class SpeakerChannel:
    """A speaker with its own priority queue and thread: plays jobs one at a time, never overlapping.

    ``on_done`` callbacks run on this channel's thread, never while its lock is held. ``held(name)``: whether a
    live talk holds the speaker now (see the module docstring); it must not raise for long (the Redis-backed one
    answers False when Redis is down, so announcements play).
    """

    def __init__(self, speaker: Speaker, held: Callable[[str], bool] = never_held) -> None:
        self.speaker = speaker
        self._held = held
        self._cond = threading.Condition()
        self._heap: list[tuple[tuple[int, int], PlayJob]] = []
        self._current: PlayJob | None = None
        self._stop_current = threading.Event()
        self._closing = False  # no new jobs; the thread ends when the queue is empty
        self._abandoned = False  # closed past its timeout: the playing job is stopped, queued ones are dropped
        self.thread = threading.Thread(target=self._run, name=f"speaker-{speaker.name}", daemon=True)
        self.thread.start()

    def put(self, job: PlayJob) -> None:
        """Queue ``job``; interrupt the current playback if ``job`` outranks it."""
        with self._cond:
            closing = self._closing
            if not closing:
                heapq.heappush(self._heap, (job.sort_key(), job))
                current = self._current
                if current is not None and job.priority > current.priority:
                    log.info("speaker %s: priority %d interrupts priority %d", self.speaker.name, job.priority,
                             current.priority)  # fmt: skip
                    self._stop_current.set()
                self._cond.notify()
        if closing:  # outside the lock: the callback may take its own locks
            now = time.time()
            job.on_done(PlaybackResult(self.speaker.name, now, now, False, "dropped: the announcer is shutting down"))

    def _next(self) -> tuple[PlayJob, threading.Event] | None:
        with self._cond:
            while not self._heap and not self._closing:
                self._cond.wait()
            if not self._heap:
                return None
            job = heapq.heappop(self._heap)[1]
            self._current, self._stop_current = job, threading.Event()
            return job, self._stop_current

    def _run(self) -> None:
        while (picked := self._next()) is not None:
            job, stop = picked
            result = self._play(job, stop)
            with self._cond:
                self._current = None
                if result is None:  # a talk took the speaker: back in its old place, to play after the talk
                    heapq.heappush(self._heap, (job.sort_key(), job))
                    continue
            try:
                job.on_done(result)
            except Exception:  # a broken callback must not kill the speaker's queue
                log.exception("speaker %s: on_done callback failed", self.speaker.name)

    def _play(self, job: PlayJob, stop: threading.Event) -> PlaybackResult | None:
        """The job's result; None when it goes back into the queue (a talk or a higher priority came first)."""
        name = self.speaker.name
        started = time.time()
        waited = started - job.queued_at
        if self._abandoned:  # queued when the announcer gave up waiting at shutdown
            return PlaybackResult(name, started, started, False, "dropped: the announcer is shutting down")
        if waited > job.deadline_s:
            log.warning("speaker %s: dropped %s, waited %.1f s", name, job.audio.name, waited)
            return PlaybackResult(
                name, started, started, False, f"dropped: waited {waited:.1f} s, over the {job.deadline_s:g} s deadline"
            )
        waited_out = self._wait_while_held(job, stop)
        if waited_out != "free":
            return None if waited_out == "again" else waited_out
        started = time.time()
        taken = threading.Event()  # set when a talk took the speaker during the playback
        watcher = self._watch_held(stop, taken)
        try:
            self.speaker.play(self._load(job), stop)
        except PlaybackInterrupted as exc:
            if taken.is_set() and not self._abandoned:
                log.info("speaker %s: a live talk took the speaker; %s plays after it", name, job.audio.name)
                return None
            ended = time.time()
            why = "the announcer is shutting down" if self._abandoned else "a higher-priority announcement"
            log.warning("speaker %s: %s (%s)", name, exc, why)
            return PlaybackResult(
                name, started, ended, False, f"interrupted after {ended - started:.1f} s by {why}: {exc}"
            )
        except (SpeakerError, AnnouncementError, OSError) as exc:
            log.error("speaker %s: %s", name, exc)
            return PlaybackResult(name, started, time.time(), False, str(exc))
        finally:
            watcher.set()
        log.info("speaker %s: played %s (%.1f s)", name, job.audio.name, time.time() - started)
        return PlaybackResult(name, started, time.time(), True)

    def _is_held(self) -> bool:
        try:
            return self._held(self.speaker.name)
        except Exception:  # a broken check must not hold announcements back
            log.exception("speaker %s: the held check failed", self.speaker.name)
            return False

    def _wait_while_held(self, job: PlayJob, stop: threading.Event) -> PlaybackResult | Literal["free", "again"]:
        """``free`` once no talk holds the speaker; a result when the job is dropped meanwhile; ``again`` when a
        higher-priority job came meanwhile (it goes first, and waits for the talk too)."""
        name = self.speaker.name
        while self._is_held():
            now = time.time()
            if self._abandoned:
                return PlaybackResult(name, now, now, False, "dropped: the announcer is shutting down")
            if now - job.queued_at > job.deadline_s:
                why = f"dropped: waited {now - job.queued_at:.1f} s (a live talk held the speaker), over the " \
                      f"{job.deadline_s:g} s deadline"  # fmt: skip
                log.warning("speaker %s: %s", name, why)
                return PlaybackResult(name, job.queued_at, now, False, why)
            if stop.wait(HELD_POLL_S) and not self._abandoned:
                return "again"
        return "free"

    def _watch_held(self, stop: threading.Event, taken: threading.Event) -> threading.Event:
        """While the playback runs, stop it as soon as a talk holds the speaker; set the returned event to end."""
        done = threading.Event()
        if self._held is never_held:
            return done

        def watch() -> None:
            while not done.wait(HELD_POLL_S):
                if self._is_held():
                    taken.set()
                    stop.set()
                    return

        threading.Thread(target=watch, name=f"held-{self.speaker.name}", daemon=True).start()
        return done

    def _load(self, job: PlayJob) -> Pcm:
        rate = self.speaker.sample_rate  # speakers apply their own gain
        chime = load_announcement(job.chime, rate) if job.chime is not None else None
        return with_chime(load_announcement(job.audio, rate), chime)

    def begin_close(self) -> None:
        """Take no new jobs; the thread ends once the queue is played."""
        with self._cond:
            self._closing = True
            self._cond.notify()

    def abandon(self) -> None:
        """Stop the playing job now (within a packet) and drop the queued ones; each still gets its result."""
        with self._cond:
            self._closing = self._abandoned = True
            self._stop_current.set()
            self._cond.notify()

    def close(self, timeout: float) -> None:
        """Finish what is queued, but return within ``timeout`` (see ``close_channels``)."""
        close_channels([self], timeout)


def close_channels(channels: Sequence[SpeakerChannel], timeout: float) -> None:
    """Let the channels play what is queued, and return within ``timeout`` whatever their speakers do.

    The queues get ``timeout`` minus a grace period; channels still busy then are abandoned (the playing job
    stopped through its stop event, queued jobs reported as dropped) and get the grace period to wind down.
    A playback that ignores its stop event still ends by its own deadline, on a thread nobody waits for.
    """
    end = time.monotonic() + timeout
    grace = min(CLOSE_GRACE_S, timeout / 4)
    for channel in channels:
        channel.begin_close()
    for channel in channels:
        channel.thread.join(max(0.0, end - grace - time.monotonic()))
    late = [channel for channel in channels if channel.thread.is_alive()]
    for channel in late:
        log.warning("speaker %s: still playing at shutdown, stopping it", channel.speaker.name)
        channel.abandon()
    for channel in late:
        channel.thread.join(max(0.0, end - time.monotonic()))


class Announcer:
    """Routes announcements to speaker channels by speaker or group name."""

    def __init__(
        self,
        configs: dict[str, SpeakerConfig],
        deadline_s: float = 60.0,
        groups: Mapping[str, Sequence[str]] | None = None,
        chime: Path | None = None,
        held: Callable[[str], bool] = never_held,
    ) -> None:
        """``held``: whether a live talk holds a speaker now (see the module docstring)."""
        self.deadline_s = deadline_s
        self.groups: Mapping[str, Sequence[str]] = groups or {}
        self.chime = chime
        self.channels = {name: SpeakerChannel(create_speaker(name, cfg), held) for name, cfg in configs.items()}

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
        """Let queued announcements finish, then stop the channels; returns within ``timeout`` (all channels)."""
        close_channels(list(self.channels.values()), timeout)
