"""Talk-down from the camera page (#16), end to end: headless Chromium's fake microphone plays a recorded
announcement, the operator presses "talk" for about three seconds, and a real RTP horn (a UDP socket) and a SIP
horn (sipp) both receive it; an announcement the engine queues on the RTP horn meanwhile plays after the talk.

The delay is measured with one clock: the page stamps the first audio frame it sends (wall clock), the horn stamps
each packet's arrival (wall clock). The received audio is compared with the file window by window, so a single
gap (a late frame under load restarts the RTP schedule) cannot sink the comparison.
"""

from __future__ import annotations

import socket
import time
import wave
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from monitor.actions.announce import Announcer
from monitor.config import load_config
from monitor.store.talks import speaker_held, talks
from monitor.types import PlaybackResult
from speakers import g711
from speakers.audio import load_announcement
from speakers.config import RtpSpeakerConfig
from speakers.rtp_wire import RtpPacket
from tests.support.audio_compare import RtpReceiver, best_alignment
from tests.support.browser import ARGS, CHROMIUM, login, until
from tests.support.sip_peer import Sipp, sipp_available, start_sipp
from tests.support.web import PASSWORDS, Site, running_site

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "announcements" / "disperse_zh.wav"
TALK_S = 3.0
WINDOW_S = 0.5  # the comparison's window: long enough to align speech, short enough that one gap spoils few
MIN_CORRELATION = 0.7  # median over windows; measured 0.91-0.96 per window (G.711, two resamplings, Chromium's AGC)
MAX_DELAY_S = 0.5


@pytest.fixture
def mic_wav(tmp_path: Path) -> Path:
    """The announcement as 16-bit mono WAV at 48 kHz, what Chromium's fake capture device reads (and loops)."""
    pcm = load_announcement(SPEECH, 48000)
    path = tmp_path / "mic.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(pcm.samples.astype("<i2").tobytes())
    return path


@pytest.fixture
def mic_browser(mic_wav: Path) -> Iterator[Any]:
    """Headless Chromium whose microphone is ``mic_wav`` (granted without asking)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("apt-get install chromium")
    fake = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic_wav}"]  # fmt: skip
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*ARGS, *fake])
        yield chromium
        chromium.close()


@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[Sipp]:
    if not sipp_available():
        pytest.skip("needs sipp: apt-get install sip-tester")
    peer = start_sipp("uas_answer.xml", tmp_path, timeout_s=60)
    yield peer
    peer.close()


def windowed_correlation(received: np.ndarray[Any, Any], reference: np.ndarray[Any, Any], rate: int) -> float:
    """Median over WINDOW_S windows of each window's best normalised correlation with the (looped) reference."""
    looped = np.tile(reference, 3)
    size = int(WINDOW_S * rate)
    loud = [received[i : i + size] for i in range(0, len(received) - size + 1, size)]
    loud = [w for w in loud if np.sqrt(np.mean(w.astype(np.float64) ** 2)) > 200]  # speech, not its pauses
    assert len(loud) >= 3, "too little audio arrived to compare"
    return float(np.median([best_alignment(looped, w)[1] for w in loud]))


def streams(packets: list[RtpPacket]) -> list[list[RtpPacket]]:
    """Packets per RTP stream (SSRC), in order of each stream's first packet."""
    by_ssrc: dict[int, list[RtpPacket]] = {}
    for packet in packets:
        by_ssrc.setdefault(packet.ssrc, []).append(packet)
    return sorted(by_ssrc.values(), key=lambda s: s[0].arrival)


def test_operator_talks_through_rtp_and_sip_horns_from_the_camera_page(
    mic_browser: Any, sipp: Sipp, redis_url: str, tmp_path: Path
) -> None:
    horn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    horn.bind(("127.0.0.1", 0))
    rtp_config = {"kind": "rtp", "host": "127.0.0.1", "port": horn.getsockname()[1]}
    config = {
        "data_dir": str(tmp_path / "data"),
        "cameras": {"gate": {"url": "rtsp://10.0.0.5/stream1", "speakers": ["horn", "page"]}},
        "speakers": {"horn": rtp_config, "page": {"kind": "sip", "uri": sipp.uri, "timeout_s": 5}},
        "talk": {"record": True},
    }
    path = tmp_path / "streams.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    horn_rx = RtpReceiver(horn, idle=4.0, overall=90)
    sip_rx = RtpReceiver(sipp.rtp, idle=2.0, overall=90)
    clock_offset = time.time() - time.monotonic()  # packet arrivals are monotonic; the page stamps wall-clock
    with running_site(redis_url, load_config(path), {"live": tmp_path / "none.jpg"}) as site:
        engine = Announcer({"horn": RtpSpeakerConfig.model_validate(rtp_config)}, held=speaker_held(site.client))
        results: list[PlaybackResult] = []
        try:
            horn_rx.start()
            sip_rx.start()
            page = login(mic_browser, site, "oper", PASSWORDS["oper"], "/cameras/gate")
            record = talk_for(page, site, engine, results)
            engine_result = wait_for(results)
        finally:
            engine.close(10)
        horn_rx.join()
        sip_rx.join()
        assert sipp.wait(30) == 0, sipp.errors()  # INVITE..BYE in order

        # the audit entry: both speakers, each with what it was sent
        assert record["ok"] and record["user"] == "oper" and record["camera"] == "gate", record
        by_speaker = {r["speaker"]: r for r in record["speakers"]}
        assert set(by_speaker) == {"horn", "page"} and all(r["ok"] and r["packets"] > 50 for r in by_speaker.values())
        assert talks(site.client)[0]["id"] == record["id"]

        # both horns heard the file
        reference = load_announcement(SPEECH, 8000).samples
        talk_stream, announcement_stream = streams(horn_rx.packets)
        assert len(talk_stream) == by_speaker["horn"]["packets"]
        for name, packets in (("horn", talk_stream), ("page", sip_rx.in_seq_order())):
            audio = g711.ulaw_decode(np.frombuffer(b"".join(p.payload for p in packets), np.uint8))
            corr = windowed_correlation(audio, reference, 8000)
            assert corr > MIN_CORRELATION, (name, corr)

        # the delay the talk adds: first frame leaving the page -> first packet at the horn
        stats = page.evaluate("document.querySelector('[data-testid=talk]').talkStats")
        delay = talk_stream[0].arrival + clock_offset - stats["firstSentAt"] / 1000
        assert -0.05 < delay < MAX_DELAY_S, delay

        # the announcement queued during the talk played whole, after the talk's last packet
        assert engine_result.ok, engine_result
        assert announcement_stream[0].arrival > talk_stream[-1].arrival
        assert len(announcement_stream) == 25  # 0.5 s at 20 ms

        # the recording is listed on the page and plays
        until(page, "document.querySelector('[data-testid=talk-audio]') !== null")
        duration = page.evaluate("""async () => {
            const audio = document.querySelector('[data-testid=talk-audio]');
            audio.preload = 'auto';
            if (audio.readyState < 1) await new Promise((ok, fail) => {
                audio.onloadedmetadata = ok; audio.onerror = () => fail(new Error('audio error')); audio.load(); });
            return audio.duration;
        }""")
        assert abs(duration - record["duration_s"]) < 0.2, (duration, record["duration_s"])
        wav = page.request.get(site.url + f"/api/talks/{record['id']}/audio")
        assert wav.status == 200 and wav.headers["content-type"] == "audio/wav"
        with wave.open(BytesIO(wav.body())) as kept:
            assert kept.getframerate() == 16000 and kept.getnframes() > 2 * 16000
    horn.close()


def talk_for(page: Any, site: Site, engine: Announcer, results: list[PlaybackResult]) -> dict[str, Any]:
    """Press talk, queue an announcement on the RTP horn after a second, press again after TALK_S; the record."""
    until(page, "document.querySelector('[data-testid=talk-target]') !== null")
    assert page.eval_on_selector("[data-testid=talk-target]", "s => s.value") == "camera:gate"
    page.click("[data-testid=talk]")
    until(page, "document.querySelector('[data-testid=talk]').talkStats.state === 'talking'", timeout=20)
    started = time.monotonic()
    until(page, "document.querySelector('[data-testid=talk]').talkStats.framesSent > 25", timeout=10)
    engine.announce(tone(site.config.data_dir / "tone.wav"), ["horn"], results.append)
    busy = {s["name"]: s["busy"] for s in page.request.get(site.url + "/api/speakers").json()}
    assert {name: (b["what"], b["user"]) for name, b in busy.items()} == {"horn": ("talk", "oper"),
                                                                          "page": ("talk", "oper")}  # fmt: skip
    assert busy["horn"]["since"], "the speakers page shows since when"
    time.sleep(max(0.0, started + TALK_S - time.monotonic()))
    page.click("[data-testid=talk]")
    until(page, "document.querySelector('[data-testid=talk]').talkStats.result !== null", timeout=30)
    assert all(s["busy"] is None for s in page.request.get(site.url + "/api/speakers").json()), "freed at the end"
    assert "喊话结束" in page.inner_text("[data-testid=talk-status]")
    record: dict[str, Any] = page.evaluate("document.querySelector('[data-testid=talk]').talkStats.result")
    return record


def tone(path: Path) -> Path:
    """Half a second of 500 Hz at 8 kHz, the engine's announcement."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(4000) / 8000
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes((np.sin(2 * np.pi * 500 * t) * 8000).astype("<i2").tobytes())
    return path


def wait_for(results: list[PlaybackResult], timeout: float = 30.0) -> PlaybackResult:
    deadline = time.monotonic() + timeout
    while not results:
        assert time.monotonic() < deadline, "the engine's announcement never finished"
        time.sleep(0.1)
    return results[0]


def test_viewers_see_talks_but_no_talk_button(browser: Any, redis_url: str, tmp_path: Path) -> None:
    config = {"data_dir": str(tmp_path / "data"),
              "cameras": {"gate": {"url": "rtsp://10.0.0.5/stream1", "speakers": ["horn"]}},
              "speakers": {"horn": {"kind": "rtp", "host": "127.0.0.1", "port": 9}}}  # fmt: skip
    path = tmp_path / "streams.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with running_site(redis_url, load_config(path), {"live": tmp_path / "none.jpg"}) as site:
        viewer = login(browser, site, "view", PASSWORDS["view"], "/cameras/gate")
        until(viewer, "document.querySelector('[data-testid=talk-list]') !== null")
        assert viewer.query_selector("[data-testid=talk]") is None
        assert viewer.query_selector("[data-testid=talk-target]") is None
        operator = login(browser, site, "oper", PASSWORDS["oper"], "/speakers")
        until(operator, "document.querySelector('[data-testid=talk-target]') !== null")
        options = operator.eval_on_selector_all("[data-testid=talk-target] option", "os => os.map(o => o.value)")
        assert options == ["camera:gate", "speaker:horn"]
