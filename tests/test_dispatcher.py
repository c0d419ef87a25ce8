"""The dispatcher on real parts: outbox file, redis-server, announcer and speakers, snapshot files."""

from __future__ import annotations

import time
import wave
from pathlib import Path

import numpy as np
import redis

from monitor.actions.announce import Announcer
from monitor.actions.dispatcher import CloseRule, Dispatcher, Evidence, RuleOutput, Speech
from monitor.clock import SystemClock
from monitor.rules.policy import Decision
from monitor.store.incidents import IncidentStore
from monitor.store.outbox import Delivery, Outbox
from monitor.types import Detections, Frame, Observation, Transition, ZoneCount
from speakers.config import HttpSpeakerConfig
from tests.support.trickle_server import TrickleServer
from tests.support.waiting import wait_until

RULE = "gathering/plaza/lower"


def short_wav(path: Path, seconds: float = 0.3) -> Path:
    """A real WAV announcement (a tone)."""
    t = np.arange(int(8000 * seconds)) / 8000
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).tobytes())
    return path


def evidence() -> Evidence:
    """A frame with two people standing in zone ``lower``."""
    image = np.full((240, 320, 3), 90, np.uint8)
    boxes = np.array([[40, 100, 80, 220], [120, 110, 160, 225]], np.float32)
    detections = Detections(boxes, np.array([0.9, 0.8], np.float32))
    obs = Observation("plaza", time.time(), detections, {"lower": ZoneCount("lower", 2, (0, 1))})
    zone = np.array([[0, 96], [320, 96], [320, 240], [0, 240]], np.float32)
    return Evidence(Frame("plaza", 1, obs.ts, image), obs, {"lower": zone}, "lower")


def test_a_trickling_speaker_is_cut_off_and_its_failure_is_on_the_incident(tmp_path: Path, redis_url: str) -> None:
    store = IncidentStore(redis.Redis.from_url(redis_url))
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    delivery = Delivery(outbox, store.apply).start()
    dispatcher = Dispatcher(outbox, tmp_path, SystemClock(), pre_roll_s=5, post_roll_s=5).start()
    with TrickleServer(interval_s=1.0) as horn:  # a byte a second: the socket timeout (2 s) never fires
        dispatcher.announcer = announcer = Announcer({"porch": HttpSpeakerConfig(kind="http", url=horn.url,
                                                                                 timeout_s=2)})  # fmt: skip
        now = time.time()
        opened = Transition("opened", now, 2, 2)
        speech = Speech(short_wav(tmp_path / "go.wav"), ("porch",))
        started = time.monotonic()
        play = Decision(True, "announce", attempt=1)
        dispatcher.submit(RuleOutput(RULE, "gathering", "plaza", "lower", (opened,), play, speech, evidence()))

        def failure_recorded() -> bool:
            records = list(store.list())
            return bool(records and records[0]["announcements"])

        wait_until(failure_recorded, 15, "the playback result reaches the incident")
        took = time.monotonic() - started
        announcer.close(2)
    dispatcher.submit(CloseRule(RULE, time.time(), "engine_stop"))
    dispatcher.stop()
    assert delivery.flush(5)
    delivery.stop()
    [record] = list(store.list())
    [result] = record["announcements"]
    assert result["speaker"] == "porch" and result["ok"] is False
    assert "deadline" in result["error"], result["error"]
    assert took < 2 + 0.3 + 1 + 2.5, f"cut off at its deadline, not after the device gave up: {took:.1f} s"
    assert record["status"] == "closed" and record["details"]["closed_by"] == "engine_stop"
    assert Path(record["snapshot"]).stat().st_size > 1000, "the annotated snapshot was written"
    assert [t["reason"] for t in record["timeline"]] == ["announce"]
    outbox.close()


def test_one_failing_action_never_stops_the_pipeline(tmp_path: Path, redis_url: str) -> None:
    store = IncidentStore(redis.Redis.from_url(redis_url))
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    (tmp_path / "snapshots").write_text("a file where the snapshot folder should be")  # snapshots cannot be written
    dispatcher = Dispatcher(outbox, tmp_path, SystemClock(), pre_roll_s=5, post_roll_s=5).start()
    for rule in ("a", "b"):
        dispatcher.submit(RuleOutput(rule, "gathering", "plaza", "lower", (Transition("opened", time.time(), 4, 4),),
                                     evidence=evidence()))  # fmt: skip
    dispatcher.stop()
    delivery = Delivery(outbox, store.apply).start()
    assert delivery.flush(5)
    delivery.stop()
    records = list(store.list())
    assert len(records) == 2, "both incidents recorded although their snapshots failed"
    assert all("snapshot_error" in r["details"] and r["snapshot"] is None for r in records)
    outbox.close()
