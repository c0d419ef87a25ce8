"""Announcements: one playback queue per speaker, so a slow or dead speaker delays no other."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from monitor.types import PlaybackResult
from speakers import Speaker, SpeakerError, create_speaker, load_announcement
from speakers.audio import AnnouncementError
from speakers.config import SpeakerConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PlayJob:
    """Play ``audio`` on one speaker, then report the result."""

    audio: Path
    queued_at: float
    deadline_s: float
    on_done: Callable[[PlaybackResult], None]


class SpeakerChannel:
    """A speaker with its own queue and thread: plays jobs one at a time, never overlapping."""

    def __init__(self, speaker: Speaker) -> None:
        self.speaker = speaker
        self.jobs: queue.Queue[PlayJob | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name=f"speaker-{speaker.name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            job.on_done(self._play(job))

    def _play(self, job: PlayJob) -> PlaybackResult:
        name = self.speaker.name
        started = time.time()
        if started - job.queued_at > job.deadline_s:  # a late "please disperse" is worse than none
            return PlaybackResult(name, started, started, False, f"dropped: waited {started - job.queued_at:.0f} s")
        try:
            self.speaker.play(load_announcement(job.audio, self.speaker.sample_rate))  # speakers apply their gain
        except (SpeakerError, AnnouncementError, OSError) as exc:
            log.error("speaker %s: %s", name, exc)
            return PlaybackResult(name, started, time.time(), False, str(exc))
        log.info("speaker %s: played %s (%.1f s)", name, job.audio.name, time.time() - started)
        return PlaybackResult(name, started, time.time(), True)

    def close(self, timeout: float) -> None:
        """Finish what is queued (up to ``timeout``) and stop."""
        self.jobs.put(None)
        self.thread.join(timeout)


class Announcer:
    """Routes announcements to speaker channels by name."""

    def __init__(self, configs: dict[str, SpeakerConfig], deadline_s: float = 60.0) -> None:
        self.deadline_s = deadline_s
        self.channels = {name: SpeakerChannel(create_speaker(name, cfg)) for name, cfg in configs.items()}

    def announce(self, audio: Path, speakers: list[str], on_done: Callable[[PlaybackResult], None]) -> None:
        """Queue ``audio`` on each named speaker; ``on_done`` is called once per speaker."""
        now = time.time()
        for name in speakers:
            self.channels[name].jobs.put(PlayJob(audio, now, self.deadline_s, on_done))

    def close(self, timeout: float = 30.0) -> None:
        """Let queued announcements finish, then stop the channels."""
        for channel in self.channels.values():
            channel.close(timeout)
