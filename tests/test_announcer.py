"""The announcer's per-speaker queues, against real speakers on loopback (RTP sockets, HTTP server, black-hole SIP)."""

from __future__ import annotations

import socket
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from pydantic import TypeAdapter

from monitor.actions.announce import Announcer, with_chime
from monitor.types import PlaybackResult
from speakers import create_speaker, g711, load_announcement
from speakers.config import SpeakerConfig
from speakers.groups import SpeakerGroupError, expand_speakers
from speakers.health import HealthMonitor
from speakers.rtp_wire import RtpPacket, parse_rtp
from tests.support.audio_compare import best_alignment
from tests.support.trickle_server import TrickleServer
from tests.support.vapix_server import FakeVapix
from tests.support.waiting import wait_until

CONFIG = TypeAdapter(SpeakerConfig)


def write_tone(path: Path, seconds: float, freq: float, rate: int = 8000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    samples = (8000 * np.sin(2 * np.pi * freq * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


@dataclass
class Results:
    """Collects PlaybackResults from the announcer's threads."""

    items: list[PlaybackResult] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def __call__(self, result: PlaybackResult) -> None:
        with self.cond:
            self.items.append(result)
            self.cond.notify_all()

    def wait(self, n: int, timeout: float = 15.0) -> list[PlaybackResult]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= n, timeout), self.items
            return list(self.items)


class Horn:
    """A UDP socket standing in for an RTP horn; keeps every packet with its arrival time."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.packets: list[RtpPacket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def config(self) -> SpeakerConfig:
        return CONFIG.validate_python({"kind": "rtp", "host": "127.0.0.1", "port": self.sock.getsockname()[1]})

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            if len(data) >= 12:  # like a real receiver, drop what cannot be RTP (the health probe's empty datagram)
                self.packets.append(parse_rtp(data, time.monotonic()))

    def streams(self) -> list[list[RtpPacket]]:
        """Packets grouped by SSRC (one per announcement), in order of first arrival."""
        by_ssrc: dict[int, list[RtpPacket]] = {}
        for packet in self.packets:
            by_ssrc.setdefault(packet.ssrc, []).append(packet)
        return list(by_ssrc.values())

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def horns() -> Iterator[list[Horn]]:
    made = [Horn(), Horn()]
    yield made
    for horn in made:
        horn.close()


@pytest.fixture
def clips(tmp_path: Path) -> dict[str, Path]:
    return {
        "a": write_tone(tmp_path / "a.wav", 0.6, 440),
        "b": write_tone(tmp_path / "b.wav", 0.4, 880),
        "c": write_tone(tmp_path / "c.wav", 0.4, 660),
        "long": write_tone(tmp_path / "long.wav", 3.0, 330),
        "chime": write_tone(tmp_path / "chime.wav", 0.3, 1200),
    }


# ---------------------------------------------------------------------------------------------- groups (pure)


def test_expand_speakers_resolves_nested_groups_in_order_without_duplicates() -> None:
    groups = {"square": ["north", "south"], "village": ["square", "gate", "north"], "empty": []}
    assert expand_speakers(["village"], groups) == ["north", "south", "gate"]
    assert expand_speakers(["gate", "square", "gate"], groups) == ["gate", "north", "south"]
    assert expand_speakers(["empty"], groups) == []
    known = ["north", "south", "gate"]
    assert expand_speakers(["village"], groups, known) == ["north", "south", "gate"]


def test_expand_speakers_errors() -> None:
    with pytest.raises(SpeakerGroupError, match="cycle: a -> b -> a"):
        expand_speakers(["a"], {"a": ["b"], "b": ["a"]})
    with pytest.raises(SpeakerGroupError, match=r"unknown speaker or speaker group 'nort' \(in group village -> sq\)"):
        expand_speakers(["village"], {"village": ["sq"], "sq": ["nort"]}, ["north"])
    with pytest.raises(SpeakerGroupError, match="both a speaker and a speaker group"):
        expand_speakers(["north"], {"north": ["x"]}, ["north", "x"])


# ---------------------------------------------------------------------------------------------- queue behaviour


def test_two_announcements_on_one_speaker_never_overlap(horns: list[Horn], clips: dict[str, Path]) -> None:
    horn = horns[0]
    announcer = Announcer({"horn": horn.config})
    results = Results()
    threads = [threading.Thread(target=announcer.announce, args=(clips[k], ["horn"], results)) for k in "ab"]
    for thread in threads:  # two rules firing at the same moment
        thread.start()
    first, second = sorted(results.wait(2), key=lambda r: r.started_at)
    announcer.close()
    assert first.ok and second.ok
    assert first.ended_at <= second.started_at
    streams = horn.streams()
    assert [len(s) for s in sorted(streams, key=len)] == [20, 30]  # 0.4 s and 0.6 s of 20 ms packets
    assert streams[0][-1].arrival < streams[1][0].arrival  # no interleaving on the wire


def test_higher_priority_interrupts_rtp_and_jumps_the_queue(horns: list[Horn], clips: dict[str, Path]) -> None:
    """The playing low-priority stream stops within a packet; the high one plays next, then the queued low one."""
    announcer = Announcer({"horn": horns[0].config})
    results = Results()
    announcer.announce(clips["long"], ["horn"], results, priority=0)
    time.sleep(0.3)  # "long" (3 s) is playing
    announcer.announce(clips["b"], ["horn"], results, priority=0)
    announcer.announce(clips["c"], ["horn"], results, priority=5)
    played = results.wait(3)
    announcer.close()
    interrupted, high, low = sorted(played, key=lambda r: r.started_at)
    assert not interrupted.ok and "interrupted" in (interrupted.error or "")
    assert interrupted.ended_at - interrupted.started_at < 1.0, "stopped, not played to the end"
    assert high.ok and low.ok and interrupted.ended_at <= high.started_at <= high.ended_at <= low.started_at
    streams = horns[0].streams()
    assert len(streams) == 3 and len(streams[0]) < 50 and [len(s) for s in streams[1:]] == [20, 20]
    second = g711.ulaw_decode(np.frombuffer(b"".join(p.payload for p in streams[1]), np.uint8))
    assert best_alignment(second, load_announcement(clips["c"], 8000).samples)[1] > 0.99  # "c": 660 Hz


def test_higher_priority_interrupts_a_playing_announcement(clips: dict[str, Path]) -> None:
    with FakeVapix() as server:
        config = CONFIG.validate_python({"kind": "http", "url": server.url, "username": "root", "password": "pass"})
        announcer = Announcer({"porch": config})
        results = Results()
        announcer.announce(clips["long"], ["porch"], results, priority=1)
        time.sleep(0.5)
        announcer.announce(clips["b"], ["porch"], results, priority=9)
        low, high = results.wait(2)
        announcer.close()
        assert not low.ok and low.error is not None and "interrupted after" in low.error
        assert low.ended_at - low.started_at < 1.0  # stopped, not played to the end (3 s)
        assert high.ok and high.started_at >= low.ended_at
        assert server.aborted == 1 and len(server.received) == 1  # only the high-priority audio was delivered
        assert len(server.received[0].data) == 3200


def test_trickling_speaker_fails_by_its_deadline_and_close_keeps_its_timeout(clips: dict[str, Path]) -> None:
    """A speaker that answers one byte a second: the incident gets a failure naming the deadline, in time, and
    shutting down while it is stuck again takes no longer than close()'s timeout (the playback is stopped)."""
    with TrickleServer(interval_s=1.0) as server:  # a byte a second: only the total deadline can end it
        config = CONFIG.validate_python({"kind": "http", "url": server.url, "timeout_s": 3})
        announcer = Announcer({"porch": config})
        results = Results()
        queued = time.time()
        announcer.announce(clips["b"], ["porch"], results)  # 0.4 s: deadline 3 s + 0.4 s + 1 s margin
        [failed] = results.wait(1, timeout=10)
        assert not failed.ok and failed.speaker == "porch"
        assert "'porch'" in (failed.error or "") and "deadline of 4.4 s exceeded" in (failed.error or "")
        assert 4.4 <= failed.ended_at - queued < 5.8  # the upper bound leaves room for a loaded CI machine

        announcer.announce(clips["long"], ["porch"], results)
        time.sleep(0.3)  # stuck in the request, far from its deadline
        t0 = time.monotonic()
        announcer.close(timeout=1.0)
        assert time.monotonic() - t0 < 2.0  # not the 4.4 s deadline, not close()'s default 30 s
        [_, stopped] = results.wait(2, timeout=1.0)
        assert not stopped.ok and "interrupted" in (stopped.error or "") and "shutting down" in (stopped.error or "")
        assert stopped.ended_at - stopped.started_at < 2.0


def test_announcement_past_its_deadline_is_dropped(horns: list[Horn], clips: dict[str, Path]) -> None:
    announcer = Announcer({"horn": horns[0].config}, deadline_s=0.3)
    results = Results()
    announcer.announce(clips["a"], ["horn"], results)
    announcer.announce(clips["b"], ["horn"], results)  # waits 0.6 s behind "a": too late
    played, dropped = results.wait(2)
    announcer.close()
    assert played.ok
    assert not dropped.ok and "dropped" in (dropped.error or "") and "0.3 s deadline" in (dropped.error or "")
    assert len(horns[0].streams()) == 1


def test_dead_speaker_does_not_delay_another(horns: list[Horn], clips: dict[str, Path]) -> None:
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a SIP "speaker" that never answers
    hole.bind(("127.0.0.1", 0))
    dead = CONFIG.validate_python({"kind": "sip", "uri": f"sip:x@127.0.0.1:{hole.getsockname()[1]}", "timeout_s": 1.5})
    announcer = Announcer({"dead": dead, "live": horns[0].config})
    results = Results()
    queued = time.time()
    announcer.announce(clips["b"], ["dead", "live"], results)
    live, dead_result = results.wait(2)
    announcer.close()
    hole.close()
    assert live.speaker == "live" and live.ok and live.started_at - queued < 0.2
    assert dead_result.speaker == "dead" and not dead_result.ok and "no response" in (dead_result.error or "")
    assert live.ended_at < dead_result.ended_at


def test_group_members_play_together(horns: list[Horn], clips: dict[str, Path]) -> None:
    announcer = Announcer({"north": horns[0].config, "south": horns[1].config}, groups={"square": ["north", "south"]})
    results = Results()
    announcer.announce(clips["b"], ["square", "north"], results)
    played = results.wait(2)
    time.sleep(0.2)
    announcer.close()
    assert sorted(r.speaker for r in played) == ["north", "south"] and all(r.ok for r in played)
    assert abs(played[0].started_at - played[1].started_at) < 0.1
    assert [len(h.streams()) for h in horns] == [1, 1]
    assert abs(horns[0].packets[0].arrival - horns[1].packets[0].arrival) < 0.1


def test_chime_plays_first_in_the_same_stream(horns: list[Horn], clips: dict[str, Path]) -> None:
    announcer = Announcer({"horn": horns[0].config})
    results = Results()
    announcer.announce(clips["b"], ["horn"], results, chime=clips["chime"])
    [result] = results.wait(1)
    announcer.close()
    assert result.ok
    [stream] = horns[0].streams()
    assert len(stream) == 50  # 0.3 s chime + 0.3 s gap + 0.4 s message
    audio = g711.ulaw_decode(np.frombuffer(b"".join(p.payload for p in stream), np.uint8))
    expected = with_chime(load_announcement(clips["b"], 8000), load_announcement(clips["chime"], 8000))
    assert best_alignment(audio, expected.samples) == (0, pytest.approx(1.0, abs=0.01))


def test_unknown_speaker_or_group_cycle_is_reported(horns: list[Horn], clips: dict[str, Path]) -> None:
    announcer = Announcer({"horn": horns[0].config}, groups={"loop": ["loop"]})
    results = Results()
    announcer.announce(clips["b"], ["nope"], results)
    announcer.announce(clips["b"], ["loop"], results)
    unknown, cycle = results.wait(2)
    announcer.close()
    assert not unknown.ok and unknown.error == "unknown speaker 'nope'"
    assert not cycle.ok and "cycle" in (cycle.error or "")


def test_health_monitor_reports_each_speaker_without_waiting_for_others(horns: list[Horn]) -> None:
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # SIP speaker that never answers OPTIONS
    hole.bind(("127.0.0.1", 0))
    configs = {
        "live": horns[0].config,
        "silent": CONFIG.validate_python(
            {"kind": "sip", "uri": f"sip:x@127.0.0.1:{hole.getsockname()[1]}", "timeout_s": 4}
        ),
    }
    monitor = HealthMonitor({n: create_speaker(n, c) for n, c in configs.items()}, interval_s=60).start()
    wait_until(lambda: monitor.status()["live"] is not None, 3, "the RTP probe (under a second) reports")
    early = monitor.status()
    wait_until(lambda: monitor.status()["silent"] is not None, 10, "the silent SIP speaker times out")
    late = monitor.status()
    monitor.close()
    hole.close()
    assert early["live"] is not None and early["live"].ok and early["silent"] is None  # not held up by "silent"
    silent = late["silent"]
    assert silent is not None and not silent.ok and "no answer to OPTIONS" in (silent.problem or "")
