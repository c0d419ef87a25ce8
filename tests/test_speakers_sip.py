"""SIP paging against a real SIP peer (sipp) and real UDP sockets; no mocks."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from monitor.types import PlaybackResult
from speakers import Pcm, SpeakerError, create_speaker, g711, load_announcement
from speakers.config import SipSpeakerConfig
from speakers.sip import SipSpeaker, parse_message, parse_sdp_answer, sdp_offer
from speakers.sip_uri import parse_sip_uri
from tests.support.audio_compare import RtpReceiver, best_alignment
from tests.support.processes import free_port
from tests.support.sip_peer import Sipp, sipp_available, start_sipp

REPO = Path(__file__).resolve().parents[1]
ANNOUNCEMENT = REPO / "announcements" / "disperse_en.wav"

needs_sipp = pytest.mark.skipif(not sipp_available(), reason="needs sipp: apt-get install sip-tester")


def sip_speaker(uri: str, **extra: object) -> SipSpeaker:
    config = SipSpeakerConfig.model_validate({"kind": "sip", "uri": uri, **extra})
    speaker = create_speaker("horn", config)
    assert isinstance(speaker, SipSpeaker)
    return speaker


def tone(seconds: float = 1.0, freq: float = 440.0) -> Pcm:
    t = np.arange(int(seconds * 8000)) / 8000
    return Pcm((8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16), 8000)


@pytest.fixture
def sipp(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sipp]:
    """sipp running the scenario named by the test's ``scenario`` parameter (indirect)."""
    if not sipp_available():
        pytest.skip("needs sipp: apt-get install sip-tester")
    peer = start_sipp(request.param, tmp_path)
    yield peer
    peer.close()


# ---------------------------------------------------------------------------------------------- pure parts


def test_sip_uri_parsing() -> None:
    assert parse_sip_uri("sip:horn@10.0.0.5:5070") == parse_sip_uri("sip:horn@10.0.0.5:5070;transport=udp")
    uri = parse_sip_uri("sip:horn@10.0.0.5")
    assert (uri.user, uri.host, uri.port) == ("horn", "10.0.0.5", 5060)
    for bad in ("horn@10.0.0.5", "sips:horn@h", "sip:horn@h;transport=tcp", "sip:horn@h:0"):
        with pytest.raises(ValueError):
            parse_sip_uri(bad)
    with pytest.raises(ValueError, match="uri"):
        SipSpeakerConfig.model_validate({"kind": "sip", "uri": "tel:+123"})


def test_sdp_offer_and_answer() -> None:
    offer = sdp_offer("192.0.2.1", 40000, "pcma", 20)
    assert "m=audio 40000 RTP/AVP 8 0\r\n" in offer and "a=sendonly" in offer
    answer = "v=0\r\nc=IN IP4 192.0.2.9\r\nm=video 0 RTP/AVP 96\r\nm=audio 5004 RTP/AVP 8 0\r\nc=IN IP4 192.0.2.7\r\n"
    assert parse_sdp_answer(answer) == (("192.0.2.7", 5004), "pcma")
    assert parse_sdp_answer("c=IN IP4 192.0.2.9\r\nm=audio 5004 RTP/AVP 0\r\n") == (("192.0.2.9", 5004), "pcmu")
    assert parse_sdp_answer(answer, "pcmu") == (("192.0.2.7", 5004), "pcmu")  # configured codec, if accepted
    with pytest.raises(ValueError, match="rejected"):
        parse_sdp_answer("c=IN IP4 192.0.2.9\r\nm=audio 0 RTP/AVP 0\r\n")
    with pytest.raises(ValueError, match="neither PCMU nor PCMA"):
        parse_sdp_answer("c=IN IP4 192.0.2.9\r\nm=audio 5004 RTP/AVP 9\r\n")


def test_sip_message_parsing_expands_compact_headers() -> None:
    msg = parse_message(b"SIP/2.0 180 Ringing\r\ni: abc\r\nCSeq: 1 INVITE\r\nt: <sip:x@y>;tag=1\r\nl: 0\r\n\r\n")
    assert msg is not None and msg.code == 180 and msg.header("call-id") == "abc" and msg.cseq == (1, "INVITE")
    assert parse_message(b"\r\n\r\n") is None


# ---------------------------------------------------------------------------------------------- against sipp


@needs_sipp
@pytest.mark.parametrize(("sipp", "codec", "payload_type"), [("uas_answer.xml", "pcmu", 0)], indirect=["sipp"])
def test_page_delivers_the_announcement(sipp: Sipp, codec: str, payload_type: int) -> None:
    """INVITE/100/180/200/ACK, paced RTP to the answered address, BYE: the audio arrives and matches."""
    pcm = load_announcement(ANNOUNCEMENT, 8000)
    receiver = RtpReceiver(sipp.rtp, idle=0.5)
    receiver.start()
    t0 = time.monotonic()
    sip_speaker(sipp.uri, codec=codec, timeout_s=5).play(pcm, threading.Event())
    elapsed = time.monotonic() - t0
    assert sipp.wait() == 0, sipp.errors()  # the call ran through INVITE..BYE in order
    receiver.join()
    packets = receiver.in_seq_order()
    assert {p.payload_type for p in packets} == {payload_type}
    assert len({p.ssrc for p in packets}) == 1 and packets[0].marker
    assert all((b.seq - a.seq) & 0xFFFF == 1 for a, b in itertools.pairwise(packets))
    received = g711.ulaw_decode(np.frombuffer(receiver.payload(), np.uint8))
    lag, corr = best_alignment(received, pcm.samples)
    assert corr > 0.9 and lag == 0, (lag, corr)
    assert pcm.duration_s - 0.1 < elapsed < pcm.duration_s + 1.0  # real-time pacing, prompt set-up and BYE


@needs_sipp
@pytest.mark.parametrize("sipp", ["uas_answer.xml"], indirect=True)
def test_page_prefers_pcma_when_configured(sipp: Sipp) -> None:
    receiver = RtpReceiver(sipp.rtp, idle=0.4)
    receiver.start()
    pcm = tone(0.6)
    sip_speaker(sipp.uri, codec="pcma").play(pcm, threading.Event())
    assert sipp.wait() == 0, sipp.errors()
    receiver.join()
    assert {p.payload_type for p in receiver.packets} == {8}
    received = g711.alaw_decode(np.frombuffer(receiver.payload(), np.uint8))
    assert best_alignment(received, pcm.samples)[1] > 0.99


@needs_sipp
@pytest.mark.parametrize("sipp", ["uas_auth.xml"], indirect=True)
def test_digest_authentication(sipp: Sipp) -> None:
    """401 with a digest challenge -> second INVITE with credentials, checked by sipp's verifyauth."""
    receiver = RtpReceiver(sipp.rtp, idle=0.4)
    receiver.start()
    sip_speaker(sipp.uri, username="page", password="secret").play(tone(0.5), threading.Event())
    assert sipp.wait() == 0, sipp.errors()
    receiver.join()
    assert len(receiver.packets) == 25


@needs_sipp
@pytest.mark.parametrize("sipp", ["uas_auth.xml"], indirect=True)
def test_wrong_password_is_a_clear_error(sipp: Sipp) -> None:
    with pytest.raises(SpeakerError, match=r"'horn'.*403 Forbidden.*wrong username or password"):
        sip_speaker(sipp.uri, username="page", password="guess").play(tone(0.5), threading.Event())


@needs_sipp
@pytest.mark.parametrize("sipp", ["uas_busy.xml"], indirect=True)
def test_busy_speaker_is_a_clear_error(sipp: Sipp) -> None:
    t0 = time.monotonic()
    with pytest.raises(SpeakerError, match=r"speaker 'horn' \(sip sip:horn@127\.0\.0\.1:\d+\): busy \(486 Busy Here\)"):
        sip_speaker(sipp.uri, timeout_s=3).play(tone(), threading.Event())
    assert time.monotonic() - t0 < 3
    assert sipp.wait() == 0, sipp.errors()  # we ACKed the 486


@needs_sipp
@pytest.mark.parametrize("sipp", ["uas_ring_forever.xml"], indirect=True)
def test_no_answer_is_cancelled_at_the_timeout(sipp: Sipp) -> None:
    t0 = time.monotonic()
    with pytest.raises(SpeakerError, match=r"'horn'.*no answer within 1.5 s \(it rang; call cancelled\)"):
        sip_speaker(sipp.uri, timeout_s=1.5).play(tone(), threading.Event())
    assert 1.5 <= time.monotonic() - t0 < 2.1
    assert sipp.wait() == 0, sipp.errors()  # CANCEL, 200, 487, ACK


def test_closed_port_is_unreachable_at_once() -> None:
    port = free_port(socket.SOCK_DGRAM)  # nothing listens: the kernel answers ICMP port unreachable
    t0 = time.monotonic()
    with pytest.raises(SpeakerError, match=rf"'horn'.*unreachable: nothing listens on 127\.0\.0\.1:{port}"):
        sip_speaker(f"sip:horn@127.0.0.1:{port}", timeout_s=2).play(tone(), threading.Event())
    assert time.monotonic() - t0 < 2


def test_silent_host_times_out_after_invite_retransmissions() -> None:
    """A black hole (socket that never answers): INVITE retransmitted at T1, 2*T1, ...; error at timeout_s."""
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind(("127.0.0.1", 0))
    hole.settimeout(0.05)
    arrivals: list[float] = []
    done = threading.Event()

    def collect() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                hole.recv(65535)
                arrivals.append(time.monotonic())

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    t0 = time.monotonic()
    with pytest.raises(SpeakerError, match=r"no response from 127\.0\.0\.1:\d+ within 2 s \(unreachable"):
        sip_speaker(f"sip:horn@127.0.0.1:{hole.getsockname()[1]}", timeout_s=2).play(tone(), threading.Event())
    assert 2.0 <= time.monotonic() - t0 < 2.3
    done.set()
    thread.join()
    hole.close()
    offsets = [round(a - arrivals[0], 1) for a in arrivals]
    assert offsets == [0.0, 0.5, 1.5], offsets  # timer A: T1, then doubling


@needs_sipp
@pytest.mark.parametrize("sipp", ["uas_options.xml"], indirect=True)
def test_health_is_an_options_ping(sipp: Sipp) -> None:
    assert sip_speaker(sipp.uri).health().ok
    assert sipp.wait() == 0, sipp.errors()
    closed = free_port(socket.SOCK_DGRAM)
    health = sip_speaker(f"sip:horn@127.0.0.1:{closed}").health()
    assert not health.ok and "unreachable" in (health.problem or "")


@needs_sipp
@pytest.mark.parametrize("sipp", ["uas_busy.xml"], indirect=True)
def test_busy_and_unreachable_are_recorded_on_the_incident(sipp: Sipp, redis_url: str, tmp_path: Path) -> None:
    """The engine's path: announcer -> PlaybackResult -> incident record in Redis, within timeout_s."""
    import redis

    from monitor.actions.announce import Announcer
    from monitor.incident import AnnouncementResult, Incident, new_incident_id
    from monitor.store.incidents import IncidentStore

    store = IncidentStore(redis.Redis.from_url(redis_url))
    opened, change = Incident(new_incident_id(time.time()), "gathering", "r", "gate", None, time.time()).opening()
    store.apply(change)
    incident = {"id": opened.id, "record": opened}
    closed_port = free_port(socket.SOCK_DGRAM)
    configs = {
        "busy_horn": SipSpeakerConfig(kind="sip", uri=sipp.uri, timeout_s=3),
        "gone_horn": SipSpeakerConfig(kind="sip", uri=f"sip:horn@127.0.0.1:{closed_port}", timeout_s=3),
    }
    audio = tmp_path / "a.wav"
    with wave.open(str(audio), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tone(0.5).samples.tobytes())
    announcer = Announcer(dict(configs))
    done = threading.Semaphore(0)
    lock = threading.Lock()

    def record(result: PlaybackResult) -> None:
        with lock:  # results come from two speaker threads; changes of one incident are numbered in order
            entry = AnnouncementResult.of(result).to_record()
            incident["record"], change = incident["record"].change("announcement", result=entry)
            store.apply(change)
        done.release()

    queued = time.monotonic()
    announcer.announce(audio, ["busy_horn", "gone_horn"], record)
    assert done.acquire(timeout=5) and done.acquire(timeout=5)
    assert time.monotonic() - queued < 3.5, "both failures recorded within the configured timeout"
    announcer.close()
    plays = {p["speaker"]: p for p in store.get(incident["id"])["announcements"]}  # type: ignore[index]
    assert plays["busy_horn"]["ok"] is False and "busy (486 Busy Here)" in plays["busy_horn"]["error"]
    assert plays["gone_horn"]["ok"] is False and "unreachable" in plays["gone_horn"]["error"]
