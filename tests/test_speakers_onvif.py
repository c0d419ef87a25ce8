"""ONVIF audio back-channel against GStreamer's ONVIF RTSP server on loopback; no mocks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from speakers import Pcm, SpeakerError, create_speaker, load_announcement
from speakers.config import OnvifSpeakerConfig
from speakers.onvif import BackChannel, OnvifSpeaker, find_backchannel
from tests.support.audio_compare import best_alignment
from tests.support.onvif_camera import OnvifCamera, start_camera
from tests.support.processes import free_port
from tests.support.rtsp import gst_rtsp_available

REPO = Path(__file__).resolve().parents[1]
ANNOUNCEMENT = REPO / "announcements" / "disperse_en.wav"

needs_gst = pytest.mark.skipif(
    not gst_rtsp_available(), reason="needs python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good}"
)


def onvif_speaker(url: str) -> OnvifSpeaker:
    speaker = create_speaker("gate-cam", OnvifSpeakerConfig.model_validate({"kind": "onvif", "url": url}))
    assert isinstance(speaker, OnvifSpeaker)
    return speaker


@pytest.fixture
def camera(tmp_path: Path) -> Iterator[OnvifCamera]:
    cam = start_camera(tmp_path)
    yield cam
    cam.close()


@pytest.fixture
def plain_camera(tmp_path: Path) -> Iterator[OnvifCamera]:
    cam = start_camera(tmp_path, plain=True)
    yield cam
    cam.close()


SDP = """v=0\r
o=- 1 1 IN IP4 127.0.0.1\r
s=cam\r
a=control:*\r
m=video 0 RTP/AVP 96\r
a=rtpmap:96 H264/90000\r
a=control:stream=0\r
a=recvonly\r
m=audio 0 RTP/AVP 0\r
a=control:stream=1\r
a=recvonly\r
m=audio 0 RTP/AVP 8\r
a=rtpmap:8 PCMA/8000\r
a=control:stream=2\r
a=sendonly\r
"""


def test_find_backchannel_picks_the_sendonly_audio_track() -> None:
    base = "rtsp://cam/stream/"
    assert find_backchannel(SDP, base) == BackChannel("rtsp://cam/stream/stream=2", 8, "pcma")
    assert find_backchannel(SDP.replace("a=sendonly", "a=recvonly"), base) is None
    absolute = SDP.replace("a=control:stream=2", "a=control:rtsp://cam/back")
    assert find_backchannel(absolute, base) == BackChannel("rtsp://cam/back", 8, "pcma")


@needs_gst
def test_backchannel_audio_reaches_the_camera(camera: OnvifCamera) -> None:
    pcm = load_announcement(ANNOUNCEMENT, 8000)
    t0 = time.monotonic()
    onvif_speaker(camera.url).play(pcm, threading.Event())
    elapsed = time.monotonic() - t0
    received = camera.received()
    lag, corr = best_alignment(received, pcm.samples)
    assert corr > 0.9, (lag, corr)
    assert abs(len(received) - len(pcm.samples)) < 400  # all of it (the last packet is padded to 20 ms)
    assert pcm.duration_s - 0.1 < elapsed < pcm.duration_s + 1.0


@needs_gst
def test_camera_without_backchannel_gives_a_clear_error(plain_camera: OnvifCamera) -> None:
    with pytest.raises(SpeakerError, match=r"'gate-cam'.*no ONVIF audio back-channel.*551 Option not supported"):
        onvif_speaker(plain_camera.url).play(Pcm(np.zeros(800, np.int16), 8000), threading.Event())
    assert onvif_speaker(plain_camera.url).health().ok


def test_unreachable_camera() -> None:
    url = f"rtsp://admin:pw@127.0.0.1:{free_port()}/stream"
    with pytest.raises(SpeakerError, match=r"'gate-cam' \(onvif 127\.0\.0\.1:\d+/stream\): cannot connect") as info:
        onvif_speaker(url).play(Pcm(np.zeros(800, np.int16), 8000), threading.Event())
    assert "pw" not in str(info.value)  # credentials stay out of logs and incident records
