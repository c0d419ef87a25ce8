"""Sampling decisions, driven by timestamps alone."""

from __future__ import annotations

from monitor.ingest.sampler import Sampler


def feed(
    sampler: Sampler, fps: float, gop_s: float, seconds: float, park: bool = False, start: float = 0.0
) -> tuple[int, int]:
    """Packets at ``fps`` with a keyframe every ``gop_s`` from ``start``: (decoded, sampled) counts."""
    decoded = sampled = 0
    per_gop = round(fps * gop_s)
    for i in range(int(fps * seconds)):
        ts = start + i / fps
        keyframe = i % per_gop == 0
        if sampler.on_packet(ts, keyframe=keyframe, park=park and keyframe):
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


def test_a_parked_camera_decodes_keyframes_only_and_samples_each() -> None:
    """A still picture (motion gate): one look per keyframe instead of 25 decodes a second."""
    sampler = Sampler(detect_fps=2)
    feed(sampler, fps=25, gop_s=2.0, seconds=4)  # the keyframe interval is measured
    decoded, sampled = feed(sampler, fps=25, gop_s=2.0, seconds=20, park=True, start=4.0)
    assert sampler.parked and sampler.skipping and not sampler.keyframes_only
    assert decoded == sampled == 10, "every keyframe, nothing else"


def test_resume_right_after_a_keyframe_decodes_its_successors() -> None:
    sampler = Sampler(detect_fps=2)
    feed(sampler, fps=25, gop_s=2.0, seconds=4)
    assert sampler.on_packet(4.0, keyframe=True, park=True) and sampler.parked
    assert sampler.due(4.0)
    assert sampler.on_packet(4.04, keyframe=False) is False  # parked: the P-frames are skipped
    sampler.resume()  # the worker saw the keyframe move, right after decoding it
    decoded, sampled = feed(sampler, fps=25, gop_s=2.0, seconds=2, start=4.04)
    assert not sampler.parked and decoded == 50 and 3 <= sampled <= 5


def test_parking_ends_at_the_next_keyframe_when_no_longer_asked() -> None:
    """Mid-GOP the skipped frames' successors cannot be decoded: decoding everything resumes at a keyframe."""
    sampler = Sampler(detect_fps=2)
    feed(sampler, fps=25, gop_s=2.0, seconds=4)
    sampler.on_packet(4.0, keyframe=True, park=True)
    assert sampler.on_packet(4.5, keyframe=False, park=False) is False and sampler.parked
    assert sampler.on_packet(6.0, keyframe=True, park=False) and not sampler.parked
    assert sampler.on_packet(6.04, keyframe=False) is True


def test_no_parking_where_keyframes_are_far_apart_or_every_frame_is_wanted() -> None:
    long_gop = Sampler(detect_fps=2)
    feed(long_gop, fps=25, gop_s=4.0, seconds=12)
    decoded, _ = feed(long_gop, fps=25, gop_s=4.0, seconds=8, park=True, start=12.0)
    assert not long_gop.parked and decoded == 200, "a change would wait up to 4 s for the next keyframe"
    every = Sampler(detect_fps=2, mode="all")
    feed(every, fps=25, gop_s=2.0, seconds=4)
    decoded, _ = feed(every, fps=25, gop_s=2.0, seconds=4, park=True, start=4.0)
    assert not every.parked and decoded == 100
