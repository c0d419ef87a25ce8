"""Scheduled broadcasts end to end: an engine on a manual clock plays them to a real RTP receiver on loopback,
records each play in a real Redis, honours repeats, restarts without replaying, speaks text with espeak-ng,
picks up a broadcast added to the saved file, keeps records while Redis is down, and shows them on the page."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import redis
import yaml
from pydantic import TypeAdapter

from monitor.actions.announce import Announcer
from monitor.actions.broadcaster import Broadcaster
from monitor.clock import ManualClock
from monitor.config import load_config
from monitor.config.broadcasts import runtime_broadcasts
from monitor.engine import Engine
from monitor.rules.broadcast import Broadcast, BroadcastTimes
from monitor.store.broadcasts import BroadcastRecords
from speakers import g711, load_announcement
from speakers.config import SpeakerConfig
from speakers.tts import speak
from tests.support.audio_compare import best_alignment
from tests.support.browser import login, until
from tests.support.redis_server import RedisProcess
from tests.support.rtp_listener import RtpListener
from tests.support.waiting import wait_until
from tests.support.web import PASSWORDS, make_media, running_site

ROOT = Path(__file__).resolve().parents[1]
ANNOUNCEMENT = ROOT / "announcements" / "disperse_en.wav"
SHANGHAI = ZoneInfo("Asia/Shanghai")
SLOT = datetime(2024, 6, 3, 7, 30, tzinfo=SHANGHAI).timestamp()  # a Monday


@pytest.fixture
def horn() -> Iterator[RtpListener]:
    listener = RtpListener()
    yield listener
    listener.close()


def config(tmp_path: Path, redis_url: str, horn: RtpListener, broadcasts: dict[str, Any]) -> Path:
    data = {
        "redis_url": redis_url,
        "data_dir": str(tmp_path / "data"),
        "cameras": {},
        "speakers": {"horn": {"kind": "rtp", "host": "127.0.0.1", "port": horn.port, "codec": "pcmu"}},
        "speaker_groups": {"village": ["horn"]},
        "broadcasts": broadcasts,
    }
    path = tmp_path / "streams.yaml"
    time.sleep(0.05)  # a new modification time, as an editor's save has
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


class Running:
    """An engine (no cameras) on a manual clock, run in a thread like ``monitor run``."""

    def __init__(self, path: Path, clock: ManualClock) -> None:
        self.engine = Engine(load_config(path), clock=clock)
        self.clock = clock
        self.thread = threading.Thread(target=self.engine.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.engine.broadcaster is not None, 20, "engine started")

    def stop(self) -> None:
        self.engine.stop_event.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def plays(redis_url: str) -> list[dict[str, Any]]:
    return BroadcastRecords(redis.Redis.from_url(redis_url)).recent(100)


def stream_audio(horn: RtpListener, first: int = 0) -> np.ndarray:
    """The G.711 payloads from the ``first``-th announcement (marker bit) on, decoded."""
    starts = [i for i, p in enumerate(horn.packets) if p[1]]
    packets = horn.packets[starts[first] :]
    return g711.ulaw_decode(np.frombuffer(b"".join(p[3] for p in packets), np.uint8))


def test_plays_at_its_time_repeats_records_and_does_not_replay_after_restart(
    tmp_path: Path, redis_url: str, horn: RtpListener
) -> None:
    path = config(tmp_path, redis_url, horn, {"morning": {"speakers": ["village"], "audio": str(ANNOUNCEMENT),
                                                          "at": ["07:30"], "repeat": 2, "gap_s": 2}})  # fmt: skip
    clock = ManualClock(SLOT - 10)
    run = Running(path, clock)
    try:
        time.sleep(1.0)  # four scheduler ticks before the slot
        assert horn.announcements == 0 and plays(redis_url) == []
        clock.advance(10)
        wait_until(lambda: len(plays(redis_url)) == 1, 30, "first play recorded")
        first = plays(redis_url)[0]
        assert (
            first["broadcast"] == "morning"
            and first["slot_ts"] == SLOT
            and (first["repeat"], first["repeats"]) == (1, 2)
        )
        assert first["ok"] and [(r["speaker"], r["ok"], r["error"]) for r in first["results"]] == [("horn", True, None)]
        expected = load_announcement(ANNOUNCEMENT, 8000).samples
        assert best_alignment(stream_audio(horn), expected)[1] > 0.99, "the horn received the file"
        time.sleep(0.5)
        assert horn.announcements == 1, "the repeat waits for its gap (clock time)"
        clock.advance(2)
        wait_until(lambda: len(plays(redis_url)) == 2, 30, "repeat recorded")
        assert plays(redis_url)[0]["repeat"] == 2 and plays(redis_url)[0]["ok"]
        assert horn.announcements == 2
        assert best_alignment(stream_audio(horn, 1), expected)[1] > 0.99
        last = BroadcastRecords(redis.Redis.from_url(redis_url)).last()
        assert last["morning"]["repeat"] == 2
    finally:
        run.stop()
    restarted = Running(path, ManualClock(SLOT + 30))  # the engine restarts at 07:30:30
    try:
        time.sleep(1.5)
        assert len(plays(redis_url)) == 2 and horn.announcements == 2, "07:30 is not played again"
    finally:
        restarted.stop()


def test_text_broadcast_added_by_hot_reload_is_spoken(tmp_path: Path, redis_url: str, horn: RtpListener) -> None:
    path = config(tmp_path, redis_url, horn, {})
    clock = ManualClock(SLOT - 60)
    run = Running(path, clock)
    text = "Good morning. The water will be off from nine to eleven."
    try:
        config(tmp_path, redis_url, horn, {"notice": {"speakers": ["horn"], "text": text, "voice": "en-us",
                                                      "at": ["07:30"]}})  # fmt: skip
        clock.advance(1)  # the loop's periodic tick looks at the file
        wait_until(lambda: "notice" in run.engine.loaded.config.broadcasts, 20, "reloaded")
        clock.advance(59)
        wait_until(lambda: len(plays(redis_url)) == 1, 30, "text play recorded")
        record = plays(redis_url)[0]
        assert record["text"] == text and record["audio"] is None and record["ok"]
        spoken = load_announcement(speak(text, "en-us", tmp_path / "data" / "tts"), 8000).samples
        assert best_alignment(stream_audio(horn), spoken)[1] > 0.99, "the horn received the spoken text"
        config(tmp_path, redis_url, horn, {})  # removed again: tomorrow's slot does not play
        clock.advance(1)
        wait_until(lambda: not run.engine.loaded.config.broadcasts, 20, "removed")
        clock.advance(86_400)
        time.sleep(1.0)
        assert len(plays(redis_url)) == 1
    finally:
        run.stop()


def test_plays_are_kept_while_redis_is_down(tmp_path: Path, redis_process: RedisProcess, horn: RtpListener) -> None:
    speaker = TypeAdapter(SpeakerConfig).validate_python({"kind": "rtp", "host": "127.0.0.1", "port": horn.port})
    announcer = Announcer({"horn": speaker})
    clock = ManualClock(SLOT - 1)
    broadcast = Broadcast("b", ("horn", "nope"), BroadcastTimes((450,), timezone="Asia/Shanghai"), ANNOUNCEMENT)
    client = redis.Redis.from_url(redis_process.url, socket_timeout=1, socket_connect_timeout=1)
    scheduler = Broadcaster(clock, tmp_path / "data", client, lambda: announcer).start({"b": broadcast})
    try:
        redis_process.signal(signal.SIGKILL)
        clock.advance(1)
        wait_until(lambda: horn.announcements == 1, 20, "played while Redis is down")
        wait_until(lambda: scheduler.last_error is not None, 20, "delivery failed")
        redis_process.start()
        wait_until(lambda: len(BroadcastRecords(redis_process.client()).recent()) == 1, 60, "delivered later")
        record = BroadcastRecords(redis_process.client()).recent()[0]
        results = {r["speaker"]: (r["ok"], r["error"]) for r in record["results"]}
        assert results == {"horn": (True, None), "nope": (False, "unknown speaker 'nope'")} and not record["ok"]
    finally:
        scheduler.stop()
        announcer.close(5)


def test_monitor_check_locates_broadcast_problems(tmp_path: Path) -> None:
    text = """cameras: {}
speakers:
  horn: {kind: rtp, host: 127.0.0.1, port: 5004}
broadcasts:
  morning:
    speakers: [horn, hron]
    audio: missing.wav
    at: ["07:30"]
  spoken:
    speakers: [horn]
    text: hello
    voice: xx-nosuchvoice
    at: ["08:00"]
"""
    path = tmp_path / "streams.yaml"
    path.write_text(text)
    out = subprocess.run([sys.executable, "-m", "monitor", "check", "-c", str(path)], capture_output=True, text=True)
    assert out.returncode == 1
    assert f"{path}:6:22: broadcasts.morning.speakers.1: unknown speaker 'hron' (did you mean 'horn'?)" in out.stderr
    path.write_text(text.replace("hron", "horn"))
    out = subprocess.run([sys.executable, "-m", "monitor", "check", "-c", str(path)], capture_output=True, text=True)
    assert out.returncode == 1
    assert f"{path}:7:5: broadcasts.morning.audio: audio file not found: {tmp_path}/missing.wav" in out.stderr
    assert f"{path}:12:5: broadcasts.spoken.voice: no espeak-ng voice 'xx-nosuchvoice' installed" in out.stderr
    path.write_text(text.replace('["07:30"]', '["7:61"]'))
    out = subprocess.run([sys.executable, "-m", "monitor", "check", "-c", str(path)], capture_output=True, text=True)
    assert f"{path}:8:10: broadcasts.morning.at.0: time 7:61 is not a time HH:MM" in out.stderr


@pytest.mark.slow
def test_page_shows_the_schedule_and_a_recorded_play(
    tmp_path: Path, redis_url: str, horn: RtpListener, square_mp4: Path, browser: Any
) -> None:
    path = config(tmp_path, redis_url, horn, {"morning": {"speakers": ["horn"], "audio": str(ANNOUNCEMENT),
                                                          "at": ["07:30", "18:00"]}})  # fmt: skip
    loaded = load_config(path)
    announcer = Announcer(dict(loaded.config.speakers))
    clock = ManualClock(SLOT - 1)
    scheduler = Broadcaster(clock, loaded.data_dir, redis.Redis.from_url(redis_url), lambda: announcer)
    scheduler.start(runtime_broadcasts(loaded.config.broadcasts, loaded.base_dir))
    try:
        clock.advance(1)
        wait_until(lambda: len(plays(redis_url)) == 1, 30, "played")
    finally:
        scheduler.stop()
        announcer.close(5)
    media = make_media(square_mp4, tmp_path / "data")
    with running_site(redis_url, loaded, media) as site:
        http = site.login("view")
        body = http.get("/api/broadcasts").json()
        assert site.anonymous().get("/api/broadcasts").status_code == 401
        assert str(ROOT) not in str(body), "no server path"
        (info,) = body["broadcasts"]
        assert info["audio"] == "disperse_en.wav" and info["next_at"] and info["last"]["ok"]
        assert body["plays"][0]["results"][0]["speaker"] == "horn"
        page = login(browser, site, "view", PASSWORDS["view"], "/broadcasts")
        until(page, "() => document.querySelectorAll('#play-log tr[data-broadcast=\"morning\"]').length === 1")
        row = page.inner_text('#play-log tr[data-broadcast="morning"]')
        assert "horn" in row and "played" in row and "1/1" in row
        assert "disperse_en.wav" in page.inner_text('#broadcast-list tr[data-name="morning"]')


def test_an_idle_scheduler_sleeps_and_wakes_when_configured_or_stopped(tmp_path: Path, redis_url: str) -> None:
    """No broadcasts (most cameras' configs): the thread does not read the clock 4 times a second (a fixed cost
    of small deployments, #15); a broadcast added by a reload is scheduled at once, and stop() is prompt."""

    class Counting(Broadcaster):
        ticks = 0

        def tick(self) -> None:
            Counting.ticks += 1
            super().tick()

    clock = ManualClock(SLOT - 10)
    scheduler = Counting(clock, tmp_path / "data", redis.Redis.from_url(redis_url), lambda: None).start({})
    try:
        time.sleep(1.5)
        idle = Counting.ticks
        assert idle <= 2, idle  # the first round (delivering a previous run's records), then asleep
        broadcast = Broadcast("b", ("horn",), BroadcastTimes((450,), timezone="Asia/Shanghai"), ANNOUNCEMENT)
        scheduler.configure({"b": broadcast})
        time.sleep(1.0)
        assert Counting.ticks >= idle + 3  # ticking again without waiting out the idle sleep
        scheduler.configure({})
        time.sleep(0.5)  # let the round in progress end
    finally:
        started = time.monotonic()
        scheduler.stop()
        assert time.monotonic() - started < 2.0
