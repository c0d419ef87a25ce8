"""Each speaker's last announcement reaches Redis with the incident's change: a real dispatcher, outbox, delivery
thread, RTP speakers on loopback (one receiving, one dead) and a real redis-server."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import redis

from monitor.actions.announce import Announcer
from monitor.actions.dispatcher import CloseRule, Dispatcher, RuleOutput, Speech
from monitor.clock import SystemClock
from monitor.incident import IncidentChange
from monitor.rules.policy import Decision
from monitor.store.incidents import IncidentStore
from monitor.store.outbox import Delivery, Outbox
from monitor.types import Transition
from speakers.config import RtpSpeakerConfig
from tests.support.rtp_listener import RtpListener
from tests.support.waiting import wait_until
from tests.support.web import SECRET, seed_incident
from tests.test_dispatcher import short_wav

RULE = "gathering/plaza/lower"


def test_played_announcements_become_each_speakers_last_result(tmp_path: Path, redis_url: str) -> None:
    store = IncidentStore(redis.Redis.from_url(redis_url))
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    delivery = Delivery(outbox, store.apply).start()
    dispatcher = Dispatcher(outbox, tmp_path, SystemClock(), pre_roll_s=5, post_roll_s=5).start()
    horn = RtpListener()
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing receives there: the stream is refused (ICMP)
    configs = {
        "live": RtpSpeakerConfig(kind="rtp", host="127.0.0.1", port=horn.port),
        "dead": RtpSpeakerConfig(kind="rtp", host="127.0.0.1", port=dead_port),
    }
    dispatcher.announcer = announcer = Announcer(dict(configs))
    try:
        speech = Speech(short_wav(tmp_path / "go.wav", 0.5), ("live", "dead"))
        opened = Transition("opened", time.time(), 5, 5)
        play = Decision(True, "announce", attempt=1)
        dispatcher.submit(RuleOutput(RULE, "gathering", "plaza", "lower", (opened,), play, speech))

        def recorded() -> bool:
            records = store.speaker_records(["live", "dead"])
            return all(r.announced for r in records.values())

        wait_until(recorded, 20, "both playback results reach each speaker's record")
        dispatcher.submit(CloseRule(RULE, time.time(), "engine_stop"))
        dispatcher.stop()
        assert delivery.flush(5)
    finally:
        announcer.close(2)
        delivery.stop()
        horn.close()
        outbox.close()
    [incident] = list(store.list())
    records = store.speaker_records(["live", "dead"])
    live, dead_record = records["live"].announced, records["dead"].announced
    assert horn.announcements == 1, "the live speaker really received the announcement"
    assert live["ok"] == "1" and live["error"] == ""
    assert live["incident"] == incident["id"] and live["camera"] == "plaza"
    assert dead_record["ok"] == "0" and "refused" in dead_record["error"].lower(), dead_record
    assert dead_record["incident"] == incident["id"]
    played = {a["speaker"]: a for a in incident["announcements"]}
    assert live["at"] == played["live"]["ended_at"] and float(live["ts"]) > time.time() - 60


def test_last_result_is_scrubbed_replays_change_nothing_and_later_results_win(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store = IncidentStore(client)
    first = seed_incident(client, ts=time.time() - 600, failed_speaker=True)  # horn1 ok, horn2 failed (401 + URL)
    records = store.speaker_records(["horn1", "horn2"])
    assert records["horn1"].announced["ok"] == "1" and records["horn1"].announced["incident"] == first
    failed = records["horn2"].announced
    assert failed["ok"] == "0" and "HTTP 401" in failed["error"]
    assert SECRET not in failed["error"], "credentials in an error never reach the speaker's record"

    incident = store.incident(first)
    assert incident is not None
    replay = IncidentChange(first, 3, "announcement", {"result": incident.announcements[0].to_record()})
    assert store.apply(replay) is False
    assert store.speaker_records(["horn1"])["horn1"].announced["incident"] == first

    later = seed_incident(client, camera="square", ts=time.time() - 60)
    latest = store.speaker_records(["horn1"])["horn1"].announced
    assert (latest["incident"], latest["camera"], latest["ok"]) == (later, "square", "1")
