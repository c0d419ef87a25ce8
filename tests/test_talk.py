"""Talk-down (#16): live audio to speakers, the speaker-busy lease, and the /api/talk routes as an attacker sees them.

Real parts throughout: UDP sockets as RTP horns, a real redis-server, the real web server and a WebSocket client.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import wave
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
import yaml
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from monitor.actions.announce import Announcer
from monitor.config import load_config
from monitor.store.talks import SpeakerLeases, holder, speaker_held, talks
from monitor.types import PlaybackResult
from monitor.web.auth import COOKIE
from speakers import SpeakerError, create_speaker, g711
from speakers.base import Talker
from speakers.config import HttpSpeakerConfig, OnvifSpeakerConfig, RtpSpeakerConfig
from speakers.http import PHRASE_S
from speakers.live import LiveFeed, StreamResampler, pace_live, send_live_rtp
from speakers.rtp import RtpSpeaker
from speakers.rtp_wire import rtp_format
from tests.support.audio_compare import RtpReceiver, best_alignment
from tests.support.onvif_camera import start_camera
from tests.support.rtsp import gst_rtsp_available
from tests.support.vapix_server import FakeVapix
from tests.support.waiting import wait_until
from tests.support.web import Site, running_site

RATE = 16000
FRAME = 320  # 20 ms


def chirp(seconds: float, rate: int = RATE) -> np.ndarray[Any, np.dtype[np.int16]]:
    """A 300-3000 Hz sweep: no two stretches alike, so an alignment cannot lock onto the wrong place."""
    t = np.arange(int(seconds * rate)) / rate
    f0, f1 = 300.0, 3000.0
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return (np.sin(phase) * 12000).astype(np.int16)


def udp_horn() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def ulaw_audio(receiver: RtpReceiver, ssrc: int | None = None) -> np.ndarray[Any, np.dtype[np.int16]]:
    packets = [p for p in receiver.in_seq_order() if ssrc is None or p.ssrc == ssrc]
    return g711.ulaw_decode(np.frombuffer(b"".join(p.payload for p in packets), np.uint8))


# ---------------------------------------------------------------------------------------------- pieces


def test_feed_is_bounded_and_drops_the_oldest() -> None:
    feed = LiveFeed(8000, max_s=0.1)  # 800 samples
    feed.push(np.arange(0, 600, dtype=np.int16))
    feed.push(np.arange(600, 1000, dtype=np.int16))
    assert feed.stats.dropped_samples == 200
    first = feed.take(160, 0.0)
    assert first is not None and first[0] == 200 and len(first) == 160  # the oldest 200 went
    waiting = feed.take(1000, 0.05)
    assert waiting is not None and len(waiting) == 0  # not enough yet, no partial: nothing
    feed.end()
    rest = feed.take(1000, 0.0)
    assert rest is not None and rest[-1] == 999 and len(rest) == 640
    assert feed.take(10, 0.0) is None


def test_streaming_resampler_matches_whole_signal_resampling() -> None:
    """20 ms chunks through swresample give the same 8 kHz signal as one go (no clicks at chunk edges)."""
    signal = chirp(1.0)
    chunked = StreamResampler(RATE, 8000)
    parts = [chunked(signal[i : i + FRAME]) for i in range(0, len(signal), FRAME)] + [chunked.flush()]
    whole = StreamResampler(RATE, 8000)
    reference = np.concatenate([whole(signal), whole.flush()])
    out = np.concatenate(parts)
    assert abs(len(out) - 8000) <= 2
    assert np.max(np.abs(out[: len(reference)].astype(int) - reference[: len(out)].astype(int))) <= 1
    assert StreamResampler(8000, 8000)(signal) is signal  # same rate: untouched


def test_pacing_restarts_after_a_gap_and_marks_the_talkspurt() -> None:
    """A late piece restarts the schedule: the slot (RTP timestamp) jumps by the gap, and it is marked."""
    now = [100.0]
    sent: list[tuple[float, int, bool]] = []
    feed = LiveFeed(8000, max_s=1.0)
    for _ in range(4):
        feed.push(np.ones(160, dtype=np.int16))
    feed.end()

    def send(samples: np.ndarray[Any, np.dtype[np.int16]], slot: int, resumed: bool) -> int:
        sent.append((now[0], slot, resumed))
        if slot == 1:
            now[0] += 0.5  # nothing arrives for half a second after the second piece
        return len(samples)

    def sleep(seconds: float) -> None:
        now[0] += seconds

    pace_live(feed, 160, send, sleep, clock=lambda: now[0])
    assert [(round(t - 100.0, 3), slot, resumed) for t, slot, resumed in sent] == [
        (0.0, 0, True), (0.02, 1, False), (0.52, 26, True), (0.54, 27, False)]  # fmt: skip
    assert feed.stats.packets == 4 and feed.stats.samples == 640


def test_rtp_speaker_talks_live_in_real_time() -> None:
    """Frames pushed as they are spoken go out as paced RTP that decodes to the same audio, promptly."""
    horn = udp_horn()
    receiver = RtpReceiver(horn, idle=1.0)
    receiver.start()
    speaker = RtpSpeaker("horn", RtpSpeakerConfig(kind="rtp", host="127.0.0.1", port=horn.getsockname()[1]))
    feed = LiveFeed(speaker.sample_rate, speaker.talk_buffer_s)
    resample = StreamResampler(RATE, speaker.sample_rate)
    signal = chirp(2.0)
    talker = threading.Thread(target=speaker.talk, args=(feed, threading.Event()))
    talker.start()
    first_push = time.monotonic()
    for i in range(0, len(signal), FRAME):  # as a microphone delivers it
        feed.push(resample(signal[i : i + FRAME]))
        time.sleep(max(0.0, first_push + (i + FRAME) / RATE - time.monotonic()))
    feed.push(resample.flush())
    feed.end()
    talker.join(10)
    receiver.join()
    horn.close()
    packets = receiver.in_seq_order()
    assert packets[0].marker and all(p.payload_type == 0 for p in packets)
    received = ulaw_audio(receiver)
    reference = np.concatenate([StreamResampler(RATE, 8000)(signal)])
    lag, corr = best_alignment(received, reference)
    assert corr > 0.9 and abs(lag) < 400, (lag, corr)
    assert packets[0].arrival - first_push < 0.2  # the first packet leaves as soon as its audio is there
    assert feed.stats.packets == len(packets) and feed.stats.dropped_samples == 0


def speak_into(feed: LiveFeed, signal: np.ndarray[Any, np.dtype[np.int16]], frame_s: float = 0.02) -> None:
    """Push ``signal`` (at the feed's rate) frame by frame in real time, as a microphone would, then end."""
    step = int(feed.rate * frame_s)
    t0 = time.monotonic()
    for i in range(0, len(signal), step):
        feed.push(signal[i : i + step])
        time.sleep(max(0.0, t0 + (i + step) / feed.rate - time.monotonic()))
    feed.end()


def test_http_speaker_talks_phrase_by_phrase() -> None:
    """transmit.cgi needs the length up front: the talk goes out as one transmit per PHRASE_S, every sample once."""
    signal = chirp(4.5, 8000)
    with FakeVapix() as vapix:
        speaker = create_speaker("porch", HttpSpeakerConfig(kind="http", url=vapix.url, username="root",
                                                            password="pass"))  # fmt: skip
        assert isinstance(speaker, Talker)
        feed = LiveFeed(speaker.sample_rate, speaker.talk_buffer_s)
        talker = threading.Thread(target=speaker.talk, args=(feed, threading.Event()))
        talker.start()
        spoken = time.monotonic()
        speak_into(feed, signal)
        talker.join(15)
        uploads = list(vapix.received)
    assert [round(len(u.data) / 8000, 1) for u in uploads] == [2.0, 2.0, 0.5]
    assert b"".join(u.data for u in uploads) == g711.ulaw_encode(signal).tobytes()
    assert uploads[0].ended < spoken + 4.5  # phrase by phrase while speaking: the delay is about one phrase
    assert uploads[0].started - spoken < PHRASE_S + 1.0
    assert feed.stats.packets == 3 and feed.stats.dropped_samples == 0


def test_http_speaker_in_clip_mode_cannot_talk() -> None:
    speaker = create_speaker("porch", HttpSpeakerConfig(kind="http", url="http://127.0.0.1:9", mode="clip", clip=1))
    assert isinstance(speaker, Talker)
    with pytest.raises(SpeakerError, match="live talk needs mode: transmit"):
        speaker.talk(LiveFeed(8000), threading.Event())


@pytest.mark.skipif(not gst_rtsp_available(), reason="needs gst-rtsp-server (see tests/support/onvif_camera.py)")
def test_onvif_backchannel_talks_live(tmp_path: Path) -> None:
    camera = start_camera(tmp_path)
    stop = threading.Event()
    try:
        speaker = create_speaker("cam", OnvifSpeakerConfig(kind="onvif", url=camera.url))
        assert isinstance(speaker, Talker)
        feed = LiveFeed(speaker.sample_rate, speaker.talk_buffer_s)
        talker = threading.Thread(target=speaker.talk, args=(feed, stop))
        talker.start()
        # silence, as a microphone gives, until the back-channel carries it: what is said during the RTSP set-up is
        # dropped by design (bounded feed), so the chirp starts only once the camera receives
        assert camera.received_file is not None
        step, deadline = feed.rate // 50, time.monotonic() + 30
        while not (camera.received_file.exists() and camera.received_file.stat().st_size > 0):
            assert talker.is_alive(), "the talk ended before the back-channel carried audio"
            assert time.monotonic() < deadline, f"nothing reached the camera in 30 s ({feed.stats.packets} RTP sent)"
            feed.push(np.zeros(step, np.int16))
            time.sleep(0.02)
        dropped_in_setup = feed.stats.dropped_samples
        signal = chirp(1.5, 8000)
        speak_into(feed, signal)
        talker.join(15)
        received = camera.received()
    finally:
        stop.set()
        camera.close()
    lag, corr = best_alignment(received, signal)
    assert corr > 0.9, (lag, corr)
    assert feed.stats.dropped_samples == dropped_in_setup, "audio spoken on a live back-channel was dropped"
    assert abs(len(received) - lag - len(signal)) < 400, (len(received), lag)  # all of the chirp, nothing more


def test_send_live_rtp_pads_the_last_packet() -> None:
    horn = udp_horn()
    receiver = RtpReceiver(horn, idle=0.3)
    receiver.start()
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.connect(horn.getsockname())
    feed = LiveFeed(8000, max_s=1.0)
    feed.push(np.full(250, 1000, dtype=np.int16))  # one and a half packets
    feed.end()
    send_live_rtp(out.send, feed, rtp_format("pcmu", None, 20), time.sleep)
    receiver.join()
    out.close()
    horn.close()
    payloads = [p.payload for p in receiver.in_seq_order()]
    assert [len(p) for p in payloads] == [160, 160]
    decoded = g711.ulaw_decode(np.frombuffer(payloads[1], np.uint8))
    assert np.all(np.abs(decoded[:90] - 1000) < 40) and np.all(decoded[90:] == 0)


# ---------------------------------------------------------------------------------------------- lease + pre-emption


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url)
    yield r
    r.close()


def tone_file(path: Path, seconds: float, freq: float = 500.0) -> Path:
    t = np.arange(int(seconds * 8000)) / 8000
    samples = (np.sin(2 * np.pi * freq * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(samples.tobytes())
    return path


def test_lease_refresh_release_and_holder(client: redis.Redis) -> None:
    leases = SpeakerLeases(client, {"what": "talk", "user": "oper", "id": "t1"}, ttl_s=1.0)
    assert leases.acquire("horn")
    assert not SpeakerLeases(client, {"what": "talk", "user": "other", "id": "t2"}).acquire("horn")
    assert holder(client, "horn") == {"what": "talk", "user": "oper", "id": "t1"}
    held = speaker_held(client)
    assert held("horn") and not held("horn2")
    time.sleep(0.6)
    refreshed: list[list[str]] = []
    refresher = threading.Thread(target=lambda: refreshed.append(leases.refresh()))  # as the talk's own thread does
    refresher.start()
    refresher.join()
    assert refreshed == [[]]
    time.sleep(0.6)  # past the first TTL: the refresh kept it
    assert held("horn")
    leases.release()
    assert not held("horn")
    assert leases.acquire("horn")
    time.sleep(1.3)  # not refreshed: it expires on its own (a crashed web process frees the speaker)
    assert not held("horn")
    assert leases.refresh() == ["horn"]


def test_redis_down_means_not_held() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    assert speaker_held(dead)("horn") is False


class Results:
    def __init__(self) -> None:
        self.items: list[PlaybackResult] = []

    def __call__(self, result: PlaybackResult) -> None:
        self.items.append(result)


def test_announcement_waits_for_a_talk_and_plays_after_it(client: redis.Redis, tmp_path: Path) -> None:
    horn = udp_horn()
    receiver = RtpReceiver(horn, idle=3.0, overall=30)
    receiver.start()
    config = RtpSpeakerConfig(kind="rtp", host="127.0.0.1", port=horn.getsockname()[1])
    announcer = Announcer({"horn": config}, held=speaker_held(client))
    leases = SpeakerLeases(client, {"what": "talk", "user": "oper", "id": "t"})
    results = Results()
    try:
        assert leases.acquire("horn")
        announcer.announce(tone_file(tmp_path / "a.wav", 0.5), ["horn"], results)
        time.sleep(1.2)
        assert not receiver.packets and not results.items  # held: it waits
        released = time.monotonic()
        leases.release()
        wait_until(lambda: bool(results.items), 10, "the announcement played")
    finally:
        announcer.close(5)
    receiver.join()
    horn.close()
    assert results.items[0].ok, results.items[0]
    assert receiver.packets[0].arrival >= released
    assert len(receiver.packets) == 25  # all of it, once


def test_a_talk_stops_a_playing_announcement_which_plays_whole_after_it(client: redis.Redis, tmp_path: Path) -> None:
    horn = udp_horn()
    receiver = RtpReceiver(horn, idle=4.0, overall=30)
    receiver.start()
    config = RtpSpeakerConfig(kind="rtp", host="127.0.0.1", port=horn.getsockname()[1])
    announcer = Announcer({"horn": config}, held=speaker_held(client))
    leases = SpeakerLeases(client, {"what": "talk", "user": "oper", "id": "t"})
    results = Results()
    try:
        announcer.announce(tone_file(tmp_path / "long.wav", 2.0), ["horn"], results)
        wait_until(lambda: len(receiver.packets) > 10, 10, "the announcement started")
        assert leases.acquire("horn")
        taken = time.monotonic()
        time.sleep(1.5)
        leases.release()
        wait_until(lambda: bool(results.items), 15, "the announcement played after the talk")
    finally:
        announcer.close(5)
    receiver.join()
    horn.close()
    by_stream: dict[int, list[float]] = {}
    for p in receiver.packets:
        by_stream.setdefault(p.ssrc, []).append(p.arrival)
    first, second = sorted(by_stream.values(), key=lambda arrivals: arrivals[0])
    assert max(first) < taken + 0.6  # stopped within the poll interval and a packet
    assert min(second) > taken + 1.4  # nothing while the talk held the speaker
    assert len(second) == 100  # then the whole announcement again
    assert len(results.items) == 1 and results.items[0].ok


def test_an_announcement_held_past_its_deadline_is_dropped(client: redis.Redis, tmp_path: Path) -> None:
    horn = udp_horn()
    config = RtpSpeakerConfig(kind="rtp", host="127.0.0.1", port=horn.getsockname()[1])
    announcer = Announcer({"horn": config}, held=speaker_held(client))
    leases = SpeakerLeases(client, {"what": "talk", "user": "oper", "id": "t"})
    results = Results()
    try:
        assert leases.acquire("horn")
        announcer.announce(tone_file(tmp_path / "a.wav", 0.5), ["horn"], results, deadline_s=1.0)
        wait_until(lambda: bool(results.items), 10, "the announcement was dropped")
        assert not results.items[0].ok and "live talk" in (results.items[0].error or "")
    finally:
        leases.release()
        announcer.close(5)
        horn.close()


# ---------------------------------------------------------------------------------------------- the web routes


@pytest.fixture
def horns() -> Iterator[dict[str, socket.socket]]:
    socks = {name: udp_horn() for name in ("horn", "horn2")}
    yield socks
    for sock in socks.values():
        sock.close()


@pytest.fixture
def talk_site(redis_url: str, tmp_path: Path, horns: dict[str, socket.socket]) -> Iterator[Site]:
    data = tmp_path / "data"
    config = {
        "data_dir": str(data),
        "cameras": {"gate": {"url": "rtsp://10.0.0.5/stream1", "speakers": ["horn"]},
                    "square": {"url": "rtsp://10.0.0.6/live"}},
        "speakers": {name: {"kind": "rtp", "host": "127.0.0.1", "port": sock.getsockname()[1]}
                     for name, sock in horns.items()},
        "speaker_groups": {"all_horns": ["horn", "horn2"]},
        "talk": {"record": True},
    }  # fmt: skip
    path = tmp_path / "streams.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with running_site(redis_url, load_config(path), {"live": tmp_path / "none.jpg"}) as site:
        yield site


def open_talk(site: Site, http: httpx.Client | None, origin: str | None = None) -> ClientConnection:
    headers = {"Origin": origin or site.url}
    if http is not None:
        headers["Cookie"] = f"{COOKIE}={http.cookies[COOKIE]}"
    return connect(site.url.replace("http", "ws", 1) + "/api/talk", additional_headers=headers, open_timeout=10)


def refused(ws: ClientConnection) -> tuple[dict[str, Any], int]:
    """The error message and the close code of a refused talk."""
    message = json.loads(ws.recv(timeout=10))
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    return message, closed.value.rcvd.code


def test_anonymous_viewer_and_foreign_pages_cannot_talk(talk_site: Site) -> None:
    with open_talk(talk_site, None) as ws:
        message, code = refused(ws)
    assert code == 4401 and message["error"] == "login required"
    with open_talk(talk_site, talk_site.login("view")) as ws:
        message, code = refused(ws)
    assert code == 4403 and "operator" in message["error"]
    oper = talk_site.login("oper")
    with pytest.raises(InvalidStatus) as foreign:  # a page elsewhere riding the cookie: no handshake at all
        open_talk(talk_site, oper, origin="http://evil.example")
    assert foreign.value.response.status_code == 403
    with pytest.raises(InvalidStatus):  # no Origin at all
        connect(talk_site.url.replace("http", "ws", 1) + "/api/talk",
                additional_headers={"Cookie": f"{COOKIE}={oper.cookies[COOKIE]}"})  # fmt: skip
    assert talks(talk_site.client) == []


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        ({"camera": "nowhere"}, "no such camera"),
        ({"targets": ["../../etc/passwd"]}, "unknown speaker or speaker group"),
        ({"targets": ["horn", "ghost"]}, "unknown speaker or speaker group 'ghost'"),
        ({"camera": "square"}, "no speakers"),
        ({}, "name a camera or speakers"),
        ({"camera": "gate", "rate": 1000}, "bad target message"),
        ("not json", "bad target message"),
    ],
)
def test_bad_targets_are_refused(talk_site: Site, first: Any, expected: str, horns: dict[str, socket.socket]) -> None:
    with open_talk(talk_site, talk_site.login("oper")) as ws:
        ws.send(first if isinstance(first, str) else json.dumps(first))
        message, code = refused(ws)
    assert code == 4400 and message["type"] == "error" and expected in message["error"], message
    assert talks(talk_site.client) == []


def test_audio_before_the_target_message_is_refused(talk_site: Site) -> None:
    with open_talk(talk_site, talk_site.login("oper")) as ws:
        ws.send(b"\x00\x01" * 160)
        message, code = refused(ws)
    assert code == 4400 and "first message" in message["error"]


def test_operator_talks_to_a_group_recorded_and_playable(talk_site: Site, horns: dict[str, socket.socket]) -> None:
    receivers = {name: RtpReceiver(sock, idle=1.5) for name, sock in horns.items()}
    for receiver in receivers.values():
        receiver.start()
    signal = chirp(1.5)
    oper = talk_site.login("oper")
    with open_talk(talk_site, oper) as ws:
        ws.send(json.dumps({"targets": ["all_horns"], "camera": "gate", "rate": RATE}))
        started = json.loads(ws.recv(timeout=10))
        assert started["type"] == "started" and started["speakers"] == ["horn", "horn2"] and started["busy"] == {}
        assert SpeakerLeases(talk_site.client, {"what": "test"}).acquire("horn") is False  # held meanwhile
        t0 = time.monotonic()
        for i in range(0, len(signal), FRAME):
            ws.send(signal[i : i + FRAME].astype("<i2").tobytes())
            time.sleep(max(0.0, t0 + (i + FRAME) / RATE - time.monotonic()))
        ws.send(json.dumps({"type": "stop"}))
        ended = json.loads(ws.recv(timeout=20))
    assert ended["type"] == "ended", ended
    record = ended["talk"]
    assert record["ok"] and record["user"] == "oper" and record["camera"] == "gate" and record["kind"] == "live"
    assert abs(record["duration_s"] - 1.5) < 0.05
    assert [r["speaker"] for r in record["speakers"]] == ["horn", "horn2"]
    reference = StreamResampler(RATE, 8000)(signal)
    for name, receiver in receivers.items():
        receiver.join()
        result = next(r for r in record["speakers"] if r["speaker"] == name)
        assert result["ok"] and result["packets"] == len(receiver.packets) > 60, result
        lag, corr = best_alignment(ulaw_audio(receiver), reference)
        assert corr > 0.9, (name, lag, corr)
    assert not speaker_held(talk_site.client)("horn")  # freed at the end
    listed = oper.get("/api/talks", params={"camera": "gate"}).json()
    assert listed[0]["id"] == record["id"] and listed[0]["audio_url"] == f"/api/talks/{record['id']}/audio"
    viewer = talk_site.login("view")  # reviewers may listen
    audio = viewer.get(listed[0]["audio_url"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    with wave.open(BytesIO(audio.content)) as wav:
        assert wav.getframerate() == RATE and wav.getnframes() == len(signal)
        kept = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    assert np.array_equal(kept, signal)
    assert viewer.get("/api/talks/20250101-000000-00000000/audio").status_code == 404
    assert viewer.get("/api/talks/..%2F..%2Fstreams.yaml/audio").status_code == 404
    assert talk_site.anonymous().get(listed[0]["audio_url"]).status_code == 401
    assert "data" not in json.dumps(listed)  # no server path anywhere


def test_a_busy_speaker_is_left_out_and_reported(talk_site: Site, horns: dict[str, socket.socket]) -> None:
    test_lease = talk_site.client.lock("vm:speaker-busy:horn2", timeout=30)
    assert test_lease.acquire(blocking=False)  # a speaker test is playing on horn2
    try:
        with open_talk(talk_site, talk_site.login("oper")) as ws:
            ws.send(json.dumps({"targets": ["all_horns"], "rate": RATE}))
            started = json.loads(ws.recv(timeout=10))
            assert started["speakers"] == ["horn"] and "busy" in started["busy"]["horn2"]
            ws.send(np.zeros(FRAME, "<i2").tobytes())
            ws.send(json.dumps({"type": "stop"}))
            ended = json.loads(ws.recv(timeout=20))
    finally:
        test_lease.release()
    results = {r["speaker"]: r for r in ended["talk"]["speakers"]}
    assert results["horn"]["ok"] and not results["horn2"]["ok"] and not ended["talk"]["ok"]


def test_oversized_frames_end_the_talk(talk_site: Site) -> None:
    with open_talk(talk_site, talk_site.login("oper")) as ws:
        ws.send(json.dumps({"camera": "gate", "rate": RATE}))
        assert json.loads(ws.recv(timeout=10))["type"] == "started"
        ws.send(b"\x00" * (RATE * 2 * 2))  # two seconds in one message
        ended = json.loads(ws.recv(timeout=20))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert ended["type"] == "ended" and closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert not speaker_held(talk_site.client)("horn")


def test_logging_out_ends_the_talk(talk_site: Site) -> None:
    oper = talk_site.login("oper")
    with open_talk(talk_site, oper) as ws:
        ws.send(json.dumps({"camera": "gate", "rate": RATE}))
        assert json.loads(ws.recv(timeout=10))["type"] == "started"
        assert oper.post("/auth/logout").status_code in (200, 204)
        ended = json.loads(ws.recv(timeout=15))  # within the session re-check
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert ended["reason"] == "session ended" and closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert not speaker_held(talk_site.client)("horn")


def test_targets_list_is_for_operators(talk_site: Site) -> None:
    assert talk_site.login("view").get("/api/talk/targets").status_code == 403
    values = [t["value"] for t in talk_site.login("oper").get("/api/talk/targets").json()]
    assert values == ["camera:gate", "group:all_horns", "speaker:horn", "speaker:horn2"]


def test_typed_message_preview_and_play(talk_site: Site, horns: dict[str, socket.socket]) -> None:
    oper = talk_site.login("oper")
    assert talk_site.login("view").post("/api/talk/preview", json={"text": "请离开"}).status_code == 403
    assert talk_site.anonymous().post("/api/talk/preview", json={"text": "请离开"}).status_code == 401
    preview = oper.post("/api/talk/preview", json={"text": "请不要聚集"})
    assert preview.status_code == 200 and preview.headers["content-type"] == "audio/wav", preview.text
    assert preview.content[:4] == b"RIFF"
    missing = oper.post("/api/talk/preview", json={"text": "hello", "voice": "xx-nonexistent"})
    assert missing.status_code == 422 and "no espeak-ng voice 'xx-nonexistent' installed" in missing.json()["detail"]
    bad = oper.post("/api/talk/say", json={"text": "hello", "targets": ["ghost"]})
    assert bad.status_code == 422 and "ghost" in bad.json()["detail"]
    receiver = RtpReceiver(horns["horn"], idle=1.0)
    receiver.start()
    said = oper.post("/api/talk/say", json={"text": "请不要聚集", "camera": "gate"}, timeout=60)
    assert said.status_code == 200, said.text
    record = said.json()
    receiver.join()
    assert record["kind"] == "text" and record["text"] == "请不要聚集" and record["ok"], record
    assert record["speakers"][0]["packets"] == len(receiver.packets) > 20
    assert oper.get("/api/talks").json()[0]["id"] == record["id"]
