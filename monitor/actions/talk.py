"""A talk: one operator's voice (or a typed message spoken by espeak-ng) to a set of speakers, as it is spoken.

Audio comes in as mono 16-bit frames at ``rate``. Every speaker gets its own sender thread and ``LiveFeed`` at its
own rate (one FFmpeg resampler per rate), so a slow or failed speaker delays no other, and one that cannot keep
up drops audio (bounded, counted) instead of holding memory (speakers/live.py).

The talk holds each speaker's busy lease (monitor/store/talks.py) from start to end and refreshes it every
``LEASE_REFRESH_S``: the engine's announcements wait meanwhile and play after it. A speaker a test or another talk
holds is left out and reported busy; one whose lease is lost mid-talk is stopped. The finished talk is an audit
record (who, when, which speakers, how long, each speaker's delivery), and with ``record`` its input audio is
kept as a WAV file named by the talk's id under ``record_dir`` (written at the end, atomically, when the disk
guard allows; held in memory meanwhile, at most ``max_s`` of it).
"""

from __future__ import annotations

import io
import logging
import secrets
import threading
import time
import wave
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis

from monitor.incident import iso
from monitor.redact import scrub
from monitor.store.disk import DiskGuard, write_atomically
from monitor.store.talks import LEASE_REFRESH_S, SpeakerLeases, record_talk
from speakers import SpeakerError
from speakers.base import Talker
from speakers.live import LiveFeed, Samples, StreamResampler

log = logging.getLogger(__name__)

FINISH_S = 10.0  # after the input ends: a sender's buffered rest plus a SIP hang-up or RTSP teardown
ABORT_S = 2.0  # then, after its stop event: how long a sender still gets


def new_talk_id(ts: float) -> str:
    """Sortable and unguessable: the start time and random hex (also the recording's file name)."""
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(ts)) + "-" + secrets.token_hex(4)


@dataclass
class _Sender:
    """One speaker's part of the talk."""

    speaker: Talker
    feed: LiveFeed
    stop: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    thread: threading.Thread | None = None

    def run(self) -> None:
        try:
            self.speaker.talk(self.feed, self.stop)
        except SpeakerError as exc:
            self.error = scrub(str(exc))
        except Exception as exc:  # a backend bug must end as this speaker's error, not a silent thread death
            log.exception("talk: speaker %s", self.speaker.name)
            self.error = f"{type(exc).__name__}: {scrub(str(exc))}"

    def result(self) -> dict[str, Any]:
        stats = self.feed.stats
        alive = self.thread is not None and self.thread.is_alive()
        error = self.error or ("did not finish in time" if alive else None)
        return {
            "speaker": self.speaker.name,
            "ok": error is None,
            "error": error,
            "packets": stats.packets,
            "bytes": stats.bytes,
            "audio_s": round(stats.samples / self.feed.rate, 2),
            "dropped_s": round(stats.dropped_samples / self.feed.rate, 2),
        }


class Talk:
    """One talk from ``start`` to ``finish`` (see module docstring); ``push`` from one thread at a time."""

    def __init__(
        self,
        client: redis.Redis,
        speakers: Mapping[str, Talker],
        *,
        user: str,
        camera: str | None,
        rate: int,
        kind: str = "live",
        text: str | None = None,
        record_dir: Path | None = None,
        disk: DiskGuard | None = None,
        buffer_s: float | None = None,
    ) -> None:
        self.client = client
        self.started = time.time()
        self.id = new_talk_id(self.started)
        self.user, self.camera, self.rate, self.kind, self.text = user, camera, rate, kind, text
        self.speakers = dict(speakers)
        holder = {"what": "talk", "user": user, "id": self.id, "since": iso(self.started) or ""}  # the speakers page
        self.leases = SpeakerLeases(client, holder)
        self.busy: dict[str, str] = {}
        self.senders: dict[str, _Sender] = {}
        self._resamplers: dict[int, StreamResampler] = {}
        self._buffer_s = buffer_s
        self._record_dir = record_dir
        self._disk = disk
        self._recorded: list[Samples] = []
        self._recording = record_dir is not None
        self._audio_error: str | None = None
        self._ended = threading.Event()
        self._refresher: threading.Thread | None = None
        self._pushed = 0

    def start(self) -> list[str]:
        """Take the speakers' leases and start their senders; the speakers now talking (``busy``: the others)."""
        if self._recording and self._disk is not None and not self._disk.ok():
            self._recording, self._audio_error = False, f"not recorded: {self._disk.code or 'disk_full'}"
        for name, speaker in self.speakers.items():
            if not self.leases.acquire(name):
                self.busy[name] = "busy: a test or another talk is using this speaker"
                continue
            buffer_s = max(speaker.talk_buffer_s, self._buffer_s or 0.0)
            sender = _Sender(speaker, LiveFeed(speaker.sample_rate, buffer_s))
            sender.thread = threading.Thread(target=sender.run, name=f"talk-{name}", daemon=True)
            self.senders[name] = sender
            self._resamplers.setdefault(speaker.sample_rate, StreamResampler(self.rate, speaker.sample_rate))
        for sender in self.senders.values():
            assert sender.thread is not None
            sender.thread.start()
        self._refresher = threading.Thread(target=self._refresh, name=f"talk-lease-{self.id}", daemon=True)
        self._refresher.start()
        log.info("talk %s by %s to %s (busy: %s)", self.id, self.user, list(self.senders), list(self.busy) or "none")
        return list(self.senders)

    def push(self, samples: Samples) -> None:
        """The next frame of input audio (mono int16 at ``rate``)."""
        self._pushed += len(samples)
        if self._recording:
            self._recorded.append(samples)
        self._fan_out({rate: resample(samples) for rate, resample in self._resamplers.items()})

    def _fan_out(self, by_rate: Mapping[int, Samples]) -> None:
        for sender in self.senders.values():
            sender.feed.push(by_rate[sender.feed.rate])

    @property
    def duration_s(self) -> float:
        """Seconds of input audio so far."""
        return self._pushed / self.rate

    def _refresh(self) -> None:
        while not self._ended.wait(LEASE_REFRESH_S):
            try:
                lost = self.leases.refresh()
            except redis.RedisError as exc:  # Redis down: the leases expire; the engine then plays again
                log.warning("talk %s: refreshing the speaker leases: %s", self.id, exc)
                continue
            for name in lost:
                log.warning("talk %s: lost the lease of speaker %s; it stops", self.id, name)
                sender = self.senders[name]
                sender.error = "stopped: the speaker's lease was lost (Redis unreachable too long?)"
                sender.stop.set()

    def finish(self) -> dict[str, Any]:
        """End the input, let every speaker play its rest, free the speakers, keep the recording and the record."""
        self._fan_out({rate: resample.flush() for rate, resample in self._resamplers.items()})
        for sender in self.senders.values():
            sender.feed.end()
        rest = max((sender.feed.buffered_s for sender in self.senders.values()), default=0.0)
        end = time.monotonic() + rest + FINISH_S
        for sender in self.senders.values():
            assert sender.thread is not None
            sender.thread.join(max(0.0, end - time.monotonic()))
            if sender.thread.is_alive():
                sender.stop.set()
                sender.thread.join(ABORT_S)
        self._ended.set()
        if self._refresher is not None:
            self._refresher.join(LEASE_REFRESH_S + 1)
        try:
            self.leases.release()
        except redis.RedisError as exc:  # Redis down: the leases expire on their own
            log.warning("talk %s: freeing the speakers: %s", self.id, exc)
        record = self.record()
        try:
            record_talk(self.client, record)
        except redis.RedisError as exc:
            log.error("talk %s: not recorded in Redis: %s", self.id, exc)
        return record

    def _save_audio(self) -> str | None:
        """The recording's file name under record_dir, or None (``_audio_error`` says why when it was wanted)."""
        if not self._recording or self._record_dir is None or not self._recorded:
            return None
        if self._disk is not None and not self._disk.ok():
            self._audio_error = f"not recorded: {self._disk.code or 'disk_full'}"
            return None
        name = f"{self.id}.wav"
        try:
            self._record_dir.mkdir(parents=True, exist_ok=True)
            write_atomically(self._record_dir / name, wav_bytes(np.concatenate(self._recorded), self.rate))
        except OSError as exc:
            log.error("talk %s: recording not saved: %s", self.id, exc)
            self._audio_error = f"not recorded: {exc.strerror or type(exc).__name__}"
            return None
        return name

    def record(self) -> dict[str, Any]:
        """The audit entry (no server path: the recording is named by the talk's id)."""
        results = [sender.result() for sender in self.senders.values()]
        results += [{"speaker": name, "ok": False, "error": why, "packets": 0, "bytes": 0, "audio_s": 0.0,
                     "dropped_s": 0.0} for name, why in self.busy.items()]  # fmt: skip
        audio = self._save_audio()
        return {
            "id": self.id,
            "kind": self.kind,
            "user": self.user,
            "camera": self.camera,
            "text": self.text,
            "started": iso(self.started),
            "started_ts": self.started,
            "duration_s": round(self.duration_s, 2),
            "ok": bool(results) and all(r["ok"] for r in results),
            "speakers": results,
            "audio": audio,
            "audio_error": self._audio_error,
        }


def wav_bytes(samples: Samples, rate: int) -> bytes:
    """Mono 16-bit PCM WAV."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    return out.getvalue()
