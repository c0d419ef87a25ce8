"""Speaker backends against real parts: UDP sockets (RTP), a private network namespace (multicast),
a PulseAudio null sink (local sound), FFmpeg-decoded files. No mocks."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from speakers import (
    AnnouncementError,
    Pcm,
    PlaybackInterrupted,
    SpeakerError,
    apply_gain,
    create_speaker,
    g711,
    load_announcement,
)
from speakers.config import LocalSpeakerConfig, RtpSpeakerConfig
from speakers.local import list_output_devices, select_output_device
from speakers.rtp import RtpSpeaker
from speakers.rtp_wire import pack_header, packetize, rtp_format
from tests.support.audio_compare import RtpPacket, RtpReceiver, best_alignment, match_with_gaps
from tests.support.pulse import PulseServer, Recorder

REPO = Path(__file__).resolve().parents[1]
ANNOUNCEMENT_EN = REPO / "announcements" / "disperse_en.wav"
ANNOUNCEMENT_ZH = REPO / "announcements" / "disperse_zh.wav"

_DECODERS: dict[str, Callable[[bytes], NDArray[np.int16]]] = {
    "pcmu": lambda b: g711.ulaw_decode(np.frombuffer(b, np.uint8)),
    "pcma": lambda b: g711.alaw_decode(np.frombuffer(b, np.uint8)),
    "l16": lambda b: np.frombuffer(b, ">i2").astype(np.int16),
}
_ENCODERS: dict[str, Callable[[NDArray[np.int16]], bytes]] = {
    "pcmu": lambda s: g711.ulaw_encode(s).tobytes(),
    "pcma": lambda s: g711.alaw_encode(s).tobytes(),
    "l16": lambda s: s.astype(">i2").tobytes(),
}


def rtp_config(port: int, codec: str = "pcmu", host: str = "127.0.0.1", **extra: object) -> RtpSpeakerConfig:
    return RtpSpeakerConfig.model_validate({"kind": "rtp", "host": host, "port": port, "codec": codec, **extra})


def local_config(device: str | int = "default") -> LocalSpeakerConfig:
    return LocalSpeakerConfig.model_validate({"kind": "local", "device": device})


def udp_receiver_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def tone(seconds: float, rate: int, freq: float = 440.0) -> Pcm:
    t = np.arange(int(seconds * rate)) / rate
    return Pcm((8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16), rate)


def assert_rtp_stream(packets: list[RtpPacket], payload_type: int, samples_per_packet: int) -> None:
    """RFC 3550 invariants of one talk-spurt: v2, one SSRC, contiguous seq, ts step, marker on first only."""
    assert packets, "no RTP packets received"
    assert {p.version for p in packets} == {2}
    assert {p.payload_type for p in packets} == {payload_type}
    assert len({p.ssrc for p in packets}) == 1
    assert not any(p.padding or p.extension or p.csrc_count for p in packets)
    assert all((b.seq - a.seq) & 0xFFFF == 1 for a, b in itertools.pairwise(packets))
    assert all((b.timestamp - a.timestamp) & 0xFFFFFFFF == samples_per_packet for a, b in itertools.pairwise(packets))
    assert [p.marker for p in packets] == [True] + [False] * (len(packets) - 1)


# ---------------------------------------------------------------------------------------------- pure helpers


def test_g711_is_bit_identical_to_audioop() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop", reason="audioop was removed in Python 3.13")
    every_sample = np.arange(-32768, 32768, dtype="<i2").tobytes()
    every_code = bytes(range(256))
    assert g711.lin2ulaw(every_sample) == audioop.lin2ulaw(every_sample, 2)
    assert g711.lin2alaw(every_sample) == audioop.lin2alaw(every_sample, 2)
    assert g711.ulaw2lin(every_code) == audioop.ulaw2lin(every_code, 2)
    assert g711.alaw2lin(every_code) == audioop.alaw2lin(every_code, 2)


def test_rtp_header_layout() -> None:
    assert pack_header(0, 0x1234, 0xDEADBEEF, 0x01020304, marker=True) == bytes.fromhex("80801234deadbeef01020304")
    assert pack_header(96, 0x10000 + 5, 0x1_0000_0007, 1) == bytes.fromhex("80600005000000070000" + "0001")


def test_packetize_pads_last_packet_with_silence() -> None:
    fmt = rtp_format("l16", 16000, 20)
    payloads = packetize(np.arange(1, 321 + 10, dtype=np.int16), fmt)
    assert [len(p) for p in payloads] == [640, 640]
    assert np.frombuffer(payloads[1], ">i2")[10:].tolist() == [0] * 310


def test_rtp_format_rejects_g711_at_16k() -> None:
    with pytest.raises(SpeakerError, match=r"'gate'.*8000 Hz"):
        RtpSpeaker("gate", rtp_config(5004, "pcma", rate=16000))


def test_apply_gain_clips_instead_of_wrapping() -> None:
    pcm = Pcm(np.array([1000, -1000, 20000, -20000], dtype=np.int16), 8000)
    assert apply_gain(pcm, 6.0206).samples.tolist() == [2000, -2000, 32767, -32768]
    assert apply_gain(pcm, 0.0) is pcm


def test_match_with_gaps_allows_only_inserted_silence() -> None:
    """The local-sound comparison: silence a starved sound server inserts passes, every other difference fails."""
    noise = np.random.default_rng(7).integers(-8000, 8000, 8000).astype(np.int16)  # no period to slip by
    ref = np.concatenate([noise[:3000], np.zeros(500, np.int16), noise[3000:]])  # with a pause of its own
    lead = np.zeros(300, np.int16)

    def gap(n: int) -> NDArray[np.int16]:
        return np.zeros(n, np.int16)

    exact = np.concatenate([lead, ref, lead])
    match = match_with_gaps(exact, ref)
    assert match.complete and match.start == 300 and match.gaps == [] and match.trailing_loud == 0
    match = match_with_gaps(
        np.concatenate([lead, ref[:2000], gap(160), ref[2000:3100], gap(80), ref[3100:], lead]), ref
    )
    assert match.complete and match.gaps == [(2000, 160), (3500, 80)]  # one in the pause shows where it ends
    lost = match_with_gaps(np.concatenate([lead, ref[:2000], ref[2400:], lead]), ref)
    assert not lost.complete and lost.matched == 2000
    changed = exact.copy()
    changed[300 + 3600] += 50
    assert match_with_gaps(changed, ref).matched == 3600
    assert not match_with_gaps(np.concatenate([lead, ref[4000:], ref[:4000], lead]), ref).complete  # reordered
    assert not match_with_gaps(np.concatenate([lead, ref[:2000], noise[:9], ref[2000:], lead]), ref).complete
    assert not match_with_gaps(exact[400:], ref).complete  # the capture missed the start
    assert not match_with_gaps(exact[:-400], ref).complete  # ... or the end
    assert match_with_gaps(np.concatenate([exact, ref[:100], lead]), ref).trailing_loud > 0  # played again


# ---------------------------------------------------------------------------------------------- RTP, real sockets


@pytest.mark.parametrize(("codec", "payload_type"), [("pcmu", 0), ("pcma", 8), ("l16", 96)])
def test_rtp_unicast_delivers_announcement(codec: str, payload_type: int) -> None:
    with udp_receiver_socket() as rx:
        receiver = RtpReceiver(rx, idle=0.3)
        receiver.start()
        speaker = create_speaker("square", rtp_config(rx.getsockname()[1], codec))
        audio = load_announcement(ANNOUNCEMENT_EN, speaker.sample_rate)
        started = time.monotonic()
        speaker.play(audio, threading.Event())
        elapsed = time.monotonic() - started
        receiver.join()

    spp = speaker.sample_rate // 50  # 20 ms
    n_packets = -(-len(audio.samples) // spp)
    assert speaker.sample_rate == (16000 if codec == "l16" else 8000)
    packets = receiver.in_seq_order()
    assert len(packets) == n_packets
    assert_rtp_stream(packets, payload_type, spp)
    assert {len(p.payload) for p in packets} == {spp * (2 if codec == "l16" else 1)}

    arrivals = np.array(sorted(p.arrival for p in receiver.packets))
    assert np.diff(arrivals).mean() == pytest.approx(0.020, abs=0.005)
    assert elapsed == pytest.approx(n_packets * 0.020, abs=0.1)  # play() blocks for the audio's duration

    received = _DECODERS[codec](receiver.payload())
    expected = _DECODERS[codec](_ENCODERS[codec](audio.samples))  # what a perfect G.711 link can deliver
    lag, corr = best_alignment(received, expected)
    assert (lag, round(corr, 6)) == (0, 1.0)
    assert np.array_equal(received[: len(expected)], expected)
    assert corr > 0.9 and best_alignment(received, audio.samples)[1] > 0.9  # close to the source too


def test_rtp_to_closed_port_raises_speaker_error() -> None:
    with udp_receiver_socket() as probe:
        port = probe.getsockname()[1]  # free now; nothing listens once closed
    speaker = RtpSpeaker("gate", rtp_config(port))
    started = time.monotonic()
    with pytest.raises(SpeakerError, match=rf"'gate'.*127\.0\.0\.1:{port}.*[Rr]efused"):
        speaker.play(tone(2.0, 8000), threading.Event())
    assert time.monotonic() - started < 0.5  # fails on the ICMP error, not after the whole announcement


def test_rtp_invalid_host_raises_speaker_error() -> None:
    speaker = RtpSpeaker("gate", rtp_config(5004, host="no-such-speaker.invalid"))
    with pytest.raises(SpeakerError, match=r"'gate'.*no-such-speaker\.invalid:5004"):
        speaker.play(tone(0.1, 8000), threading.Event())


def test_rtp_wrong_sample_rate_raises_speaker_error() -> None:
    with pytest.raises(SpeakerError, match=r"'gate'.*8000 Hz, got 16000"):
        RtpSpeaker("gate", rtp_config(5004)).play(tone(0.1, 16000), threading.Event())


_MULTICAST_SCRIPT = r"""
import json, socket, struct, sys, threading
from speakers import create_speaker, load_announcement, g711
from speakers.config import RtpSpeakerConfig
from tests.support.audio_compare import RtpReceiver
group, port, iface = "239.255.42.1", 5004, "127.0.0.1"
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
rx.bind((group, port))
membership = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(iface))
rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
receiver = RtpReceiver(rx, idle=0.3, record_ttl=True)
receiver.start()
config = RtpSpeakerConfig(kind="rtp", host=group, port=port, codec="pcmu", ttl=3, multicast_interface=iface)
speaker = create_speaker("plaza", config)
audio = load_announcement(sys.argv[1], speaker.sample_rate)
speaker.play(audio, threading.Event())
receiver.join()
packets = receiver.in_seq_order()
received = g711.ulaw_decode(__import__("numpy").frombuffer(receiver.payload(), "uint8"))
expected = g711.ulaw_decode(g711.ulaw_encode(audio.samples))
print(json.dumps({"packets": len(packets), "ttls": sorted({p.ttl for p in packets}),
                  "pts": sorted({p.payload_type for p in packets}),
                  "match": bool((received[: len(expected)] == expected).all()), "n": len(expected)}))
"""


def test_rtp_multicast_in_private_network_namespace() -> None:
    """Multicast is only ever sent inside a fresh network namespace that has nothing but ``lo``."""
    if shutil.which("unshare") is None or shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root, unshare (util-linux) and ip (iproute2) for a private network namespace")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [
            "unshare",
            "--net",
            "sh",
            "-c",
            'ip link set lo up && exec "$@"',
            "sh",
            sys.executable,
            "-c",
            _MULTICAST_SCRIPT,
            str(ANNOUNCEMENT_EN),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
        check=False,
    )
    if result.returncode != 0 and "Operation not permitted" in result.stderr:
        pytest.skip(f"cannot create a network namespace here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["packets"] == -(-report["n"] // 160)
    assert report["pts"] == [0]
    assert report["ttls"] == [3]  # config.ttl reached the wire as IP_MULTICAST_TTL
    assert report["match"]


@pytest.mark.slow
def test_rtp_60_second_announcement_does_not_drift() -> None:
    with udp_receiver_socket() as rx:
        receiver = RtpReceiver(rx, idle=0.3, overall=90.0)
        receiver.start()
        speaker = RtpSpeaker("square", rtp_config(rx.getsockname()[1], "pcmu"))
        started = time.monotonic()
        speaker.play(tone(60.0, 8000), threading.Event())
        elapsed = time.monotonic() - started
        receiver.join()
    assert len(receiver.packets) == 3000
    assert elapsed == pytest.approx(60.0, abs=0.1)  # ends within 100 ms of 60 s after its start
    arrivals = sorted(p.arrival for p in receiver.packets)
    assert arrivals[-1] - arrivals[0] == pytest.approx(2999 * 0.020, abs=0.1)


# ---------------------------------------------------------------------------------------------- local, PulseAudio


def test_local_speaker_plays_into_null_sink(pulse: PulseServer, recorder: Callable[[], Recorder]) -> None:
    """Every sample arrives, in order, within 2 LSB. Under heavy CPU load the sound server may still run dry for
    a moment and insert silence; that is tolerated (a few short gaps), lost, changed or extra audio is not."""
    speaker = create_speaker("yard", local_config("default"))
    audio = load_announcement(ANNOUNCEMENT_EN, speaker.sample_rate)
    assert speaker.sample_rate == pulse.rate  # no resampling anywhere -> sample-exact comparison
    with recorder() as rec:
        speaker.play(audio, threading.Event())
    match = match_with_gaps(rec.samples(), audio.samples, tolerance=2)
    assert match.start > 0, "recording started after the announcement"
    assert match.complete, match
    assert match.trailing_loud == 0, "something else was played after the announcement"
    assert len(match.gaps) <= 5 and match.gap_samples < 0.2 * pulse.rate, match.gaps


def test_local_speaker_stops_within_a_chunk(pulse: PulseServer) -> None:
    speaker = create_speaker("yard", local_config("default"))
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(PlaybackInterrupted, match=r"'yard'.*interrupted"):
        speaker.play(tone(5.0, 16000), stop)
    assert time.monotonic() - t0 < 1.5


def test_local_device_is_found_by_case_insensitive_name(pulse: PulseServer) -> None:
    devices = list_output_devices()
    names = {index: name for index, name, _ in devices}
    assert "pulse" in names.values(), devices
    assert names[select_output_device(devices, "PULSE", None)] == "pulse"
    with pytest.raises(LookupError):
        select_output_device(devices, "no-such-card", None)


def test_unknown_local_device_raises_speaker_error_listing_devices(pulse: PulseServer) -> None:
    speaker = create_speaker("yard", local_config("no-such-card"))
    with pytest.raises(SpeakerError, match="'yard'") as excinfo:
        speaker.play(tone(0.1, 16000), threading.Event())
    message = str(excinfo.value)
    assert "no-such-card" in message and "'pulse'" in message  # tells the operator what exists


def test_local_speaker_without_sound_server_raises_speaker_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_SERVER", "unix:/nonexistent/pulse/native")
    speaker = create_speaker("yard", local_config())
    with pytest.raises(SpeakerError, match=r"'yard'.*no output devices"):
        speaker.play(tone(0.1, 16000), threading.Event())


# ---------------------------------------------------------------------------------------------- announcement files


def test_announcement_assets_are_16k_mono() -> None:
    for path in (ANNOUNCEMENT_EN, ANNOUNCEMENT_ZH):
        pcm = load_announcement(path, 16000)
        assert 3.0 < pcm.duration_s < 8.0
        assert 0.8 * 32767 < int(np.max(np.abs(pcm.samples.astype(np.int32)))) <= 32767


def test_load_announcement_is_cached_until_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    shutil.copy(ANNOUNCEMENT_EN, path)
    first = load_announcement(path, 8000)
    assert load_announcement(path, 8000) is first
    assert not first.samples.flags.writeable  # shared between callers, so read-only
    shutil.copy(ANNOUNCEMENT_ZH, path)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert load_announcement(path, 8000).duration_s > first.duration_s


def test_load_announcement_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AnnouncementError, match=r"nothere\.wav"):
        load_announcement(tmp_path / "nothere.wav", 16000)


def test_load_announcement_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    with pytest.raises(AnnouncementError, match=r"broken\.wav"):
        load_announcement(path, 16000)


def test_load_announcement_decodes_stereo_44k_mp3(tmp_path: Path) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    mp3 = tmp_path / "disperse_en.mp3"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            str(ANNOUNCEMENT_EN),
            "-ac",
            "2",
            "-ar",
            "44100",
            "-b:a",
            "128k",
            str(mp3),
        ],
        check=True,
    )
    wav = load_announcement(ANNOUNCEMENT_EN, 16000)
    pcm = load_announcement(mp3, 16000)
    assert pcm.rate == 16000 and pcm.samples.ndim == 1
    assert pcm.duration_s == pytest.approx(wav.duration_s, abs=0.1)
    lag, corr = best_alignment(pcm.samples, wav.samples)
    assert abs(lag) < 0.1 * 16000 and corr > 0.9
