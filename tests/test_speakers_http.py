"""HTTP (Axis VAPIX-style) speakers against a real HTTP server on loopback (digest/basic auth, TLS); no mocks."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from speakers import Pcm, PlaybackInterrupted, SpeakerError, create_speaker, g711, load_announcement
from speakers.config import HttpSpeakerConfig
from speakers.http import Challenge, HttpSpeaker, digest_authorization, parse_challenges
from tests.support.audio_compare import best_alignment
from tests.support.processes import free_port
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
    http_speaker(vapix.url, username="root", password="pass").play(pcm)
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
        http_speaker(server.url, username="root", password="pass").play(tone())
        assert len(server.received) == 1


def test_clip_mode_triggers_the_stored_clip(vapix: FakeVapix) -> None:
    http_speaker(vapix.url, username="root", password="pass", mode="clip", clip=3).play(tone())
    assert vapix.plays == [3] and vapix.received == []


def test_wrong_password_is_a_clear_401(vapix: FakeVapix) -> None:
    with pytest.raises(SpeakerError, match=r"'porch' \(http http://127\.0\.0\.1:\d+\): 401 Unauthorized.*wrong"):
        http_speaker(vapix.url, username="root", password="guess").play(tone())
    with pytest.raises(SpeakerError, match=r"'porch'.*401 Unauthorized.*needs a username and password"):
        http_speaker(vapix.url).play(tone())
    assert vapix.received == []


def test_unreachable_speaker() -> None:
    port = free_port()
    with pytest.raises(SpeakerError, match=r"'porch'.*ConnectionRefusedError"):
        http_speaker(f"http://127.0.0.1:{port}").play(tone())
    problem = http_speaker(f"http://127.0.0.1:{port}").health()
    assert problem is not None and "porch" in problem


def test_health_reports_a_live_speaker(vapix: FakeVapix) -> None:
    assert http_speaker(vapix.url).health() is None  # 401 still means "the device is there"


def test_tls_with_custom_ca(tls_files: tuple[Path, Path, Path]) -> None:
    ca, cert, key = tls_files
    with FakeVapix(tls=(cert, key)) as server:
        assert server.url.startswith("https://")
        http_speaker(server.url, username="root", password="pass", ca_file=str(ca)).play(tone())
        assert len(server.received) == 1
        with pytest.raises(SpeakerError, match=r"'porch'.*TLS certificate not trusted.*set ca_file"):
            http_speaker(server.url, username="root", password="pass").play(tone())
        http_speaker(server.url, username="root", password="pass", verify_tls=False).play(tone())
        assert len(server.received) == 2


def test_stop_event_interrupts_the_stream(vapix: FakeVapix) -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(PlaybackInterrupted, match=r"'porch'.*interrupted"):
        http_speaker(vapix.url, username="root", password="pass").play(tone(3.0), stop=stop)
    assert time.monotonic() - t0 < 0.8
    deadline = time.monotonic() + 2
    while vapix.aborted == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert vapix.aborted == 1 and vapix.received == []
