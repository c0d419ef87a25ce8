"""HTTP (Axis VAPIX-style) speakers against a real HTTP server on loopback (digest/basic auth, TLS); no mocks."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from speakers import (
    DeadlineExceeded,
    Pcm,
    PlaybackInterrupted,
    SpeakerError,
    SpeakerHealth,
    create_speaker,
    g711,
    load_announcement,
)
from speakers.config import HttpSpeakerConfig
from speakers.digest import Challenge, digest_authorization, parse_challenges
from speakers.http import HttpSpeaker
from tests.support.audio_compare import best_alignment
from tests.support.processes import free_port
from tests.support.trickle_server import TrickleServer
from tests.support.vapix_server import FakeVapix, make_tls_files

REPO = Path(__file__).resolve().parents[1]
ANNOUNCEMENT = REPO / "announcements" / "disperse_en.wav"


def http_speaker(url: str, **extra: object) -> HttpSpeaker:
    config = HttpSpeakerConfig.model_validate({"kind": "http", "url": url, **extra})
    speaker = create_speaker("porch", config)
    assert isinstance(speaker, HttpSpeaker)
    return speaker


def tone(seconds: float = 0.5) -> Pcm:
    t = np.arange(int(seconds * 8000)) / 8000
    return Pcm((8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), 8000)


@pytest.fixture
def vapix() -> Iterator[FakeVapix]:
    with FakeVapix() as server:
        yield server


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl CLI")
    return make_tls_files(tmp_path_factory.mktemp("tls"))


# ---------------------------------------------------------------------------------------------- pure parts


def test_digest_matches_rfc2617_example() -> None:
    challenge = Challenge("digest", {"realm": "testrealm@host.com", "qop": "auth,auth-int",
                                     "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
                                     "opaque": "5ccc069c403ebaf9f0171e9517f40e41"})  # fmt: skip
    header = digest_authorization(challenge, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", 1, "0a4f113b")
    assert 'response="6629fae49393a05397450978507c4ef1"' in header and "nc=00000001" in header


def test_challenge_parsing() -> None:
    [digest, basic] = parse_challenges(['Digest realm="a b", nonce="n,1", qop="auth"', 'Basic realm="x"'])
    assert (digest.scheme, digest.params) == ("digest", {"realm": "a b", "nonce": "n,1", "qop": "auth"})
    assert basic.scheme == "basic"


def test_config_contract() -> None:
    with pytest.raises(ValueError, match="clip"):
        HttpSpeakerConfig.model_validate({"kind": "http", "url": "http://10.0.0.7", "mode": "clip"})
    with pytest.raises(ValueError, match="http"):
        HttpSpeakerConfig.model_validate({"kind": "http", "url": "ftp://10.0.0.7"})
    config = HttpSpeakerConfig.model_validate({"kind": "http", "url": "https://10.0.0.7", "password": "s3cret"})
    assert config.mode == "transmit" and "s3cret" not in repr(config)


# ---------------------------------------------------------------------------------------------- against the server


def test_transmit_uploads_the_announcement_with_digest_auth(vapix: FakeVapix) -> None:
    pcm = load_announcement(ANNOUNCEMENT, 8000)
    t0 = time.monotonic()
    http_speaker(vapix.url, username="root", password="pass").play(pcm, threading.Event())
    elapsed = time.monotonic() - t0
    [upload] = vapix.received
    assert upload.content_type == "audio/basic"
    assert upload.data == g711.ulaw_encode(pcm.samples).tobytes()  # every byte, once (no empty digest retry)
    lag, corr = best_alignment(g711.ulaw_decode(np.frombuffer(upload.data, np.uint8)), pcm.samples)
    assert lag == 0 and corr > 0.9
    assert pcm.duration_s - 0.2 < elapsed < pcm.duration_s + 0.5  # streamed in real time: returns when heard
    assert upload.ended - upload.started > pcm.duration_s - 0.2


def test_basic_auth(tmp_path: Path) -> None:
    with FakeVapix(scheme="basic") as server:
        http_speaker(server.url, username="root", password="pass").play(tone(), threading.Event())
        assert len(server.received) == 1


def test_clip_mode_triggers_the_stored_clip(vapix: FakeVapix) -> None:
    http_speaker(vapix.url, username="root", password="pass", mode="clip", clip=3).play(tone(), threading.Event())
    assert vapix.plays == [3] and vapix.received == []


def test_wrong_password_is_a_clear_401(vapix: FakeVapix) -> None:
    with pytest.raises(SpeakerError, match=r"'porch' \(http http://127\.0\.0\.1:\d+\): 401 Unauthorized.*wrong"):
        http_speaker(vapix.url, username="root", password="guess").play(tone(), threading.Event())
    with pytest.raises(SpeakerError, match=r"'porch'.*401 Unauthorized.*needs a username and password"):
        http_speaker(vapix.url).play(tone(), threading.Event())
    assert vapix.received == []


def test_unreachable_speaker() -> None:
    port = free_port()
    with pytest.raises(SpeakerError, match=r"'porch'.*ConnectionRefusedError"):
        http_speaker(f"http://127.0.0.1:{port}").play(tone(), threading.Event())
    health = http_speaker(f"http://127.0.0.1:{port}").health()
    assert not health.ok and health.speaker == "porch" and "'porch'" in (health.problem or "")


def test_health_reports_a_live_speaker(vapix: FakeVapix) -> None:
    assert http_speaker(vapix.url).health().ok  # 401 still means "the device is there"


def test_tls_with_custom_ca(tls_files: tuple[Path, Path, Path]) -> None:
    ca, cert, key = tls_files
    with FakeVapix(tls=(cert, key)) as server:
        assert server.url.startswith("https://")
        http_speaker(server.url, username="root", password="pass", ca_file=str(ca)).play(tone(), threading.Event())
        assert len(server.received) == 1
        with pytest.raises(SpeakerError, match=r"'porch'.*TLS certificate not trusted.*set ca_file"):
            http_speaker(server.url, username="root", password="pass").play(tone(), threading.Event())
        http_speaker(server.url, username="root", password="pass", verify_tls=False).play(tone(), threading.Event())
        assert len(server.received) == 2


def test_stop_event_interrupts_the_stream(vapix: FakeVapix) -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(PlaybackInterrupted, match=r"'porch'.*interrupted"):
        http_speaker(vapix.url, username="root", password="pass").play(tone(3.0), stop)
    assert time.monotonic() - t0 < 0.8
    deadline = time.monotonic() + 2
    while vapix.aborted == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert vapix.aborted == 1 and vapix.received == []


def test_trickling_speaker_is_cut_off_at_the_total_deadline() -> None:
    """One byte a second restarts a 3 s socket timeout forever; the deadline (3 s + 0.5 s audio + 1 s) does not.

    A health check at the same time ends by its own deadline: min(timeout_s, 5 s), + 0.5 s for its own report.
    """
    with TrickleServer(interval_s=1.0) as server:
        speaker = http_speaker(server.url, timeout_s=3)
        checks: list[tuple[SpeakerHealth, float]] = []
        checker = threading.Thread(target=lambda: checks.append((speaker.health(), time.monotonic())))
        t0 = time.monotonic()
        checker.start()
        with pytest.raises(
            DeadlineExceeded, match=r"'porch' \(http .*\): deadline of 4\.5 s exceeded \(0\.5 s of audio"
        ):
            speaker.play(tone(0.5), threading.Event())
        assert 4.5 <= time.monotonic() - t0 < 5.8  # room for a loaded CI machine
        checker.join()
        [(health, checked)] = checks
        assert not health.ok and "deadline of 3.0 s exceeded (health check)" in (health.problem or "")
        assert 3.5 <= checked - t0 < 4.8
        while len(server.hangups) < 2 and time.monotonic() - t0 < 7.0:
            time.sleep(0.02)
        assert len(server.accepted) == 2  # one connection each, no reconnect behind our back
        assert len(server.hangups) == 2 and max(server.hangups) - t0 < 5.8  # both shut at their deadline
