"""RTP speaker health is checked, not assumed: real UDP sockets on loopback answer the probe (or refuse it with
ICMP), a multicast group is 'unverifiable', and the engine's status thread publishes the state to a real Redis."""

from __future__ import annotations

import socket
from pathlib import Path

import redis

from monitor.runtime.status import StatusReporter
from monitor.store.incidents import IncidentStore, speaker_key
from speakers import SpeakerHealth
from speakers.config import RtpSpeakerConfig
from speakers.health import HealthMonitor, check_speaker
from speakers.rtp import RtpSpeaker
from tests.support.rtp_listener import RtpListener
from tests.support.waiting import wait_until


def rtp(host: str, port: int, name: str = "horn") -> RtpSpeaker:
    # multicast leaves through loopback's address: CI's private network namespace has no multicast route, and a
    # group with no route is (rightly) 'failed: Network is unreachable', not unverifiable
    return RtpSpeaker(
        name, RtpSpeakerConfig(kind="rtp", host=host, port=port, codec="pcmu", multicast_interface="127.0.0.1")
    )


def closed_port() -> int:
    """A loopback UDP port nobody listens on (bound, then closed)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def test_live_receiver_is_ok_and_the_probe_is_no_rtp_packet() -> None:
    horn = RtpListener()
    try:
        health = rtp("127.0.0.1", horn.port).health()
    finally:
        horn.close()
    assert health.state == "ok" and health.ok and health.problem is None and health.unverifiable is None
    assert horn.packets == [], "the probe is an empty datagram: no RTP receiver takes it for audio"


def test_closed_receiver_is_failed_with_a_clear_problem() -> None:
    health = rtp("127.0.0.1", closed_port()).health()
    assert health.state == "failed" and not health.ok
    assert health.problem is not None
    assert "'horn'" in health.problem and "ICMP port unreachable" in health.problem, health.problem


def test_health_turns_failed_when_the_receiver_stops_after_being_healthy() -> None:
    horn = RtpListener()
    monitor = HealthMonitor({"horn": rtp("127.0.0.1", horn.port)}, interval_s=0.2).start()
    try:

        def state() -> str | None:
            health = monitor.status()["horn"]
            return None if health is None else health.state

        wait_until(lambda: state() == "ok", 10, "the running receiver is checked ok")
        horn.close()  # the horn's receiver stops: it must not stay 'healthy'
        wait_until(lambda: state() == "failed", 10, "the stopped receiver is checked failed")
    finally:
        monitor.close()


def test_multicast_group_is_unverifiable_not_ok() -> None:
    health = rtp("239.255.42.9", 5004).health()
    assert health.state == "unverifiable" and not health.ok and health.problem is None
    assert health.unverifiable is not None and "239.255.42.9" in health.unverifiable


def test_unresolvable_host_is_failed() -> None:
    health = rtp("no-such-speaker.invalid", 5004).health()
    assert health.state == "failed" and "cannot resolve" in (health.problem or "")


def test_a_backend_that_raises_is_failed_never_unknown() -> None:
    class Broken:
        name = "broken"
        sample_rate = 8000

        def play(self, audio: object, stop: object) -> None:
            raise AssertionError("not called")

        def health(self) -> SpeakerHealth:
            raise RuntimeError("driver crashed")

    health = check_speaker(Broken())
    assert health.state == "failed" and "driver crashed" in (health.problem or "")


def test_status_thread_publishes_each_state(tmp_path: Path, redis_url: str) -> None:
    horn = RtpListener()
    speakers = {
        "live": rtp("127.0.0.1", horn.port, "live"),
        "dead": rtp("127.0.0.1", closed_port(), "dead"),
        "group": rtp("239.255.42.9", 5004, "group"),
    }
    monitor = HealthMonitor(speakers, interval_s=60).start()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        wait_until(lambda: all(h is not None for h in monitor.status().values()), 10, "every speaker checked once")
        StatusReporter(IncidentStore(client), tmp_path, ttl_s=60).report([], monitor)
    finally:
        monitor.close()
        horn.close()
    published = {name: client.hgetall(speaker_key(name)) for name in speakers}
    assert {name: (h["state"], h["ok"]) for name, h in published.items()} == {
        "live": ("ok", "1"),
        "dead": ("failed", "0"),
        "group": ("unverifiable", "0"),
    }
    assert published["live"]["problem"] == ""
    assert "ICMP port unreachable" in published["dead"]["problem"]
    assert "multicast" in published["group"]["problem"]
    assert float(published["live"]["checked_ts"]) > 0
