"""Deferred decoding on real H.264: the same sampled frames, pixel for pixel, from fewer decoded frames."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from monitor.ingest.deferred import MAX_PENDING, DeferredDecoder
from monitor.ingest.sampler import Sampler

Sample = tuple[float, np.ndarray]


def camera_clip(source: Path, out: Path, gop: int, b_frames: int = 0) -> Path:
    """4 s of the sample as a 25 fps camera stream with a GOP of ``gop`` frames (small, so decoding is quick)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("apt-get install ffmpeg")
    args = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(source), "-t", "4", "-an"]
    args += ["-vf", "scale=320:240,framerate=fps=25", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    args += ["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", str(b_frames), str(out)]
    subprocess.run(args, check=True)
    return out


def sample(path: Path, defer: bool, detect_fps: float = 2.0) -> tuple[list[Sample], DeferredDecoder]:
    """The worker's decode loop (Sampler + DeferredDecoder) over a file: the sampled frames and the decoder."""
    samples: list[Sample] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type, stream.thread_count = "NONE", 1  # as the worker opens cameras up to 1080p
        tb = float(stream.time_base or 0)
        sampler, decoder = Sampler(detect_fps), DeferredDecoder(stream, "cam")
        decoder.deferring = decoder.deferring and defer
        for packet in container.demux(stream):
            if packet.pts is None:
                continue  # the demuxer's final empty packet
            ts = packet.pts * tb
            if not sampler.on_packet(ts, packet.is_keyframe):
                continue
            for frame, held, held_ts in decoder.push(packet, ts, packet.is_keyframe, sampler.wants(ts)):
                frame_ts = held_ts + ((frame.pts or 0) - (held.pts or 0)) * tb
                if sampler.due(frame_ts):
                    samples.append((round(frame_ts, 3), frame.to_ndarray(format="bgr24")))
    return samples, decoder


def assert_same(got: list[Sample], want: list[Sample]) -> None:
    assert [t for t, _ in got] == [t for t, _ in want]
    for (t, a), (_, b) in zip(got, want, strict=True):
        assert np.array_equal(a, b), f"frame at {t} s differs"


@pytest.mark.parametrize(("gop", "most_decoded"), [(50, 0.80), (25, 0.56)])
def test_the_same_frames_from_fewer_decodes(square_mp4: Path, tmp_path: Path, gop: int, most_decoded: float) -> None:
    clip = camera_clip(square_mp4, tmp_path / f"gop{gop}.mp4", gop)
    deferred, decoder = sample(clip, defer=True)
    eager, reference = sample(clip, defer=False)
    assert len(eager) >= 7, "about 2 samples per second of 4 s"
    assert_same(deferred, eager)
    assert decoder.deferring and reference.decoded == reference.pushed == 100
    # GOP 2 s: the last 0.5 s of each GOP is nobody's reference (~22 % saved); GOP 1 s: nearly half of it
    assert decoder.decoded <= most_decoded * reference.decoded, (decoder.decoded, reference.decoded)


def test_b_frames_turn_deferring_off_and_change_nothing(square_mp4: Path, tmp_path: Path) -> None:
    clip = camera_clip(square_mp4, tmp_path / "bframes.mp4", 50, b_frames=2)
    deferred, decoder = sample(clip, defer=True)
    eager, _ = sample(clip, defer=False)
    assert not decoder.deferring, "packets out of display order must be decoded on arrival"
    assert_same(deferred, eager)


def test_a_burst_is_bounded_when_nothing_is_wanted_for_long(square_mp4: Path, tmp_path: Path) -> None:
    clip = camera_clip(square_mp4, tmp_path / "gop100.mp4", 100)  # one keyframe in 4 s
    deferred, decoder = sample(clip, defer=True, detect_fps=0.2)  # one frame wanted every 5 s: the first
    eager, _ = sample(clip, defer=False, detect_fps=0.2)
    assert_same(deferred, eager)
    # the keyframe (wanted), then one full burst of held packets; the last 49 were still held when the file ended
    assert (decoder.pushed, decoder.decoded) == (100, 1 + MAX_PENDING)
