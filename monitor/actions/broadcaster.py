"""The broadcast scheduler: plays each configured broadcast at its times on the shared announcer, and records it.

It runs on its own thread and reads the injected clock, so it never holds up the detection loop and tests can
step time. Each tick asks ``due`` (monitor/rules/broadcast.py) for slots after the broadcast's cursor; the newest
due slot is marked played in the local ledger *before* it is queued (at most once, even across a crash) and goes
to the ``Announcer`` with the broadcast's priority, so incident announcements (priority 0 by default, above the
broadcasts' -10) go first on a shared speaker. Repeats start ``gap_s`` (clock time) after the previous play
ended on every speaker.

Each play (one per repeat) becomes a record with every speaker's result; records wait in the ledger until Redis
takes them (retried with backoff), so a Redis outage or a restart loses none.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from monitor.actions.announce import Announcer
from monitor.clock import Clock
from monitor.incident import AnnouncementResult
from monitor.redact import scrub
from monitor.rules.broadcast import Broadcast, due
from monitor.store.broadcasts import BroadcastLedger, BroadcastRecords
from monitor.types import PlaybackResult
from speakers.groups import SpeakerGroupError, expand_speakers
from speakers.tts import TtsError, speak

log = logging.getLogger(__name__)

TICK_S = 0.25  # how often the clock is read (a slot plays at most this late)
IDLE_S = 60.0  # nothing configured, queued or undelivered: the thread sleeps until configure() or stop() wakes it
DEADLINE_S = 300.0  # a broadcast queued behind other announcements still plays if it waited less than this
MAX_BACKOFF_S = 30.0


@dataclass(slots=True)
class Play:
    """One play (repeat ``repeat`` of ``broadcast.repeat``) of a slot; results collect as speakers finish."""

    broadcast: Broadcast
    slot: float
    repeat: int = 1
    not_before: float = 0.0  # clock time the repeat may start (after the gap)
    queued: float = 0.0
    expected: int = 0
    results: list[PlaybackResult] = field(default_factory=list)


def play_record(play: Play) -> dict[str, Any]:
    """The stored record of a finished play (errors scrubbed of credentials)."""
    b = play.broadcast
    results = [AnnouncementResult.of(r).to_record() | {"error": scrub(r.error) if r.error else None}
               for r in play.results]  # fmt: skip
    return {
        "broadcast": b.name,
        "slot_ts": play.slot,
        "queued_ts": play.queued,
        "repeat": play.repeat,
        "repeats": b.repeat,
        "audio": b.audio.name if b.audio is not None else None,
        "text": b.text,
        "ok": bool(results) and all(r["ok"] for r in results),
        "results": results,
    }


class Broadcaster:
    """Plays and records scheduled broadcasts; ``configure`` swaps the set (hot reload) while it runs."""

    def __init__(
        self,
        clock: Clock,
        data_dir: Path,
        client: redis.Redis,
        announcer: Callable[[], Announcer | None],
        tick_s: float = TICK_S,
    ) -> None:
        self.clock = clock
        self.ledger = BroadcastLedger(data_dir / "broadcasts.sqlite3")
        self.records = BroadcastRecords(client)
        self._tts_dir = data_dir / "tts"
        self._announcer = announcer
        self.tick_s = tick_s
        self._lock = threading.Lock()
        self._broadcasts: dict[str, Broadcast] = {}
        self._cursor: dict[str, float] = {}  # slots at or before this clock time are handled
        self._waiting: list[Play] = []  # repeats waiting for their gap
        self._playing: dict[int, Play] = {}
        self._results: queue.Queue[tuple[int, PlaybackResult | None]] = queue.Queue()  # None: only a wake-up
        self._undelivered = True  # records a previous run left in the ledger
        self._retry_at, self._backoff = 0.0, 0.5
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broadcasts", daemon=True)

    def start(self, broadcasts: Mapping[str, Broadcast]) -> Broadcaster:
        """Resume each broadcast after its last played slot (or up to MISSED_GRACE_S back) and start ticking."""
        with self._lock:
            for name in broadcasts:
                last = self.ledger.last_slot(name)
                self._cursor[name] = last if last is not None else float("-inf")  # ``due`` applies the grace
            self._broadcasts = dict(broadcasts)
        self._thread.start()
        return self

    def configure(self, broadcasts: Mapping[str, Broadcast]) -> None:
        """A new set from a reloaded config: added ones play from now on, removed ones stop (repeats too)."""
        now = self.clock.now()
        with self._lock:
            self._cursor = {name: self._cursor.get(name, now) for name in broadcasts}
            self._waiting = [p for p in self._waiting if p.broadcast.name in broadcasts]
            self._broadcasts = dict(broadcasts)
        self._results.put((0, None))  # an idle thread looks again now

    def _busy(self) -> bool:
        """Anything to schedule, play or deliver (else the thread need not read the clock 4 times a second)."""
        with self._lock:
            return bool(self._broadcasts or self._waiting or self._playing) or self._undelivered

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._collect(self.tick_s if self._busy() else IDLE_S)
                self.tick()
                self._deliver()
            except Exception:  # a bug here must not end the broadcasts for good
                log.exception("broadcast scheduler")
                self._stop.wait(1.0)

    def tick(self) -> None:
        """Queue what is due now: new slots and repeats whose gap is over."""
        now = self.clock.now()
        starts: list[Play] = []
        with self._lock:
            for name, broadcast in self._broadcasts.items():
                slots = due(broadcast.times, self._cursor[name], now)
                self._cursor[name] = max(self._cursor[name], now)  # a clock set back replays nothing
                if slots:
                    if len(slots) > 1:
                        log.warning("broadcast %s: %d slots were missed, playing only the newest", name, len(slots) - 1)
                    starts.append(Play(broadcast, slots[-1]))
            ready = [p for p in self._waiting if p.not_before <= now]
            self._waiting = [p for p in self._waiting if p.not_before > now]
        for play in starts:
            self.ledger.mark_played(play.broadcast.name, play.slot)
        for play in starts + ready:
            self._queue(play)

    def _queue(self, play: Play) -> None:
        b, announcer = play.broadcast, self._announcer()
        play.queued = self.clock.now()
        log.info("broadcast %s: playing (%d/%d) on %s", b.name, play.repeat, b.repeat, ", ".join(b.speakers))
        try:
            audio = b.audio if b.audio is not None else speak(str(b.text), b.voice, self._tts_dir)
        except TtsError as exc:
            self._failed(play, str(exc))
            return
        if announcer is None:
            self._failed(play, "the speakers are not running")
            return
        try:
            play.expected = len(expand_speakers(b.speakers, announcer.groups))
        except SpeakerGroupError:
            play.expected = len(b.speakers)  # the announcer reports each name as failed
        key = id(play)
        self._playing[key] = play
        announcer.announce(
            audio,
            list(b.speakers),
            lambda result: self._results.put((key, result)),
            priority=b.priority,
            deadline_s=DEADLINE_S,
        )

    def _failed(self, play: Play, error: str) -> None:
        now = time.time()
        play.results = [PlaybackResult(name, now, now, False, error) for name in play.broadcast.speakers]
        self._finish(play)

    def _collect(self, timeout: float) -> None:
        """Take speaker results (waiting up to ``timeout`` for the first); finish plays every speaker reported."""
        try:
            item = self._results.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            key, result = item
            play = self._playing.get(key) if result is not None else None
            if play is not None and result is not None:
                play.results.append(result)
                if len(play.results) >= play.expected:
                    self._finish(self._playing.pop(key))
            try:
                item = self._results.get_nowait()
            except queue.Empty:
                return

    def _finish(self, play: Play) -> None:
        record = play_record(play)
        self.ledger.add(record)
        self._undelivered = True
        b = play.broadcast
        log.info("broadcast %s: played (%d/%d), ok=%s", b.name, play.repeat, b.repeat, record["ok"])
        if play.repeat < b.repeat:
            nxt = Play(b, play.slot, play.repeat + 1, not_before=self.clock.now() + b.gap_s)
            with self._lock:
                if self._broadcasts.get(b.name) is not None:
                    self._waiting.append(nxt)

    def _deliver(self) -> None:
        """Move ledger records to Redis, in order; on failure wait (backoff) and keep them."""
        if not self._undelivered or time.monotonic() < self._retry_at:
            return
        try:
            while batch := self.ledger.pending():
                for row_id, record in batch:
                    self.records.add(record)
                    self.ledger.delivered(row_id)
        except redis.RedisError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("broadcast plays wait for Redis: %s", exc)
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(MAX_BACKOFF_S, self._backoff * 2)
            return
        self._undelivered, self.last_error, self._backoff = False, None, 0.5

    def stop(self, timeout: float = 5.0) -> None:
        """Stop scheduling; record the results that came in, deliver what Redis takes now, keep the rest."""
        self._stop.set()
        self._results.put((0, None))  # ends an idle wait at once
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._collect(0.0)
        self._retry_at = 0.0
        self._deliver()
        self.ledger.close()
