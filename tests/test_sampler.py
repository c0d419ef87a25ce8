"""Sampling decisions, driven by timestamps alone."""

from __future__ import annotations

from monitor.ingest.sampler import Sampler


def feed(sampler: Sampler, fps: float, gop_s: float, seconds: float) -> tuple[int, int]:
    """Packets at ``fps`` with a keyframe every ``gop_s``: (decoded, sampled) counts."""
    decoded = sampled = 0
    per_gop = round(fps * gop_s)
    for i in range(int(fps * seconds)):
        ts = i / fps
        if sampler.on_packet(ts, keyframe=i % per_gop == 0):
            decoded += 1
            sampled += sampler.due(ts)
    return decoded, sampled


def test_short_gop_uses_keyframes_only() -> None:
    sampler = Sampler(detect_fps=2)
    decoded, sampled = feed(sampler, fps=25, gop_s=0.5, seconds=20)
    assert sampler.keyframes_only
    assert decoded < 100, "after the first GOP is measured, only keyframes are decoded (of 500 packets)"
    assert 40 <= sampled <= 42, "every keyframe (12-frame GOP: 2.08/s), so never under 2 detections per second"


def test_keyframes_slightly_faster_than_the_detect_rate_are_all_used() -> None:
    """A 12-frame GOP at 25 fps gives 2.08 keyframes/s: every one is detected, never fewer than 2/s."""
    sampler = Sampler(detect_fps=2)
    feed(sampler, fps=25, gop_s=0.48, seconds=2)  # the keyframe interval is measured
    decoded, sampled = feed(sampler, fps=25, gop_s=0.48, seconds=20)
    assert sampler.keyframes_only
    assert sampled == decoded >= 40


def test_long_gop_decodes_everything_but_samples_at_the_detect_rate() -> None:
    sampler = Sampler(detect_fps=2)
    decoded, sampled = feed(sampler, fps=25, gop_s=2.0, seconds=20)
    assert not sampler.keyframes_only and sampler.keyframe_interval == 2.0
    assert decoded == 500
    assert 39 <= sampled <= 41


def test_low_detect_rate_with_long_gop_uses_keyframes() -> None:
    sampler = Sampler(detect_fps=0.5)
    decoded, sampled = feed(sampler, fps=25, gop_s=2.0, seconds=20)
    assert sampler.keyframes_only and decoded < 100 and 9 <= sampled <= 10


def test_forced_modes() -> None:
    assert Sampler(2, "keyframes").on_packet(0.1, keyframe=False) is False
    assert Sampler(0.1, "all").on_packet(0.1, keyframe=False) is True
