"""Browser-playable copies of HEVC clips: decode the H.265 clip, encode H.264 beside it (same frames, same timing).

Many cameras stream H.265, which Chromium plays only with hardware decoding on some platforms; the remuxed clip
stays the original (for export and download) and the copy is what other browsers play. The copy's name is
derived from the clip's (``clips/<id>.mp4`` -> ``clips/<id>.h264.mp4``), so whoever deletes a clip finds its copy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av

HEVC = "hevc"
COPY_SUFFIX = ".h264.mp4"
PRESET, CRF = "veryfast", "23"
ENCODER_THREADS = 2  # a copy may take a while; the cameras' detection keeps the other cores


def video_codec(clip: Path) -> str:
    """The codec name of the clip's video stream (``hevc``, ``h264``...); av.FFmpegError if it cannot be read."""
    with av.open(str(clip)) as container:
        if not container.streams.video:
            raise ValueError("the clip has no video stream")
        return str(container.streams.video[0].codec_context.name)


def needs_copy(codec: str) -> bool:
    """Whether browsers need a transcoded copy of a clip in this codec (every browser plays H.264)."""
    return codec == HEVC


def copy_path(clip: Path) -> Path:
    """Where the playable copy of ``clip`` is kept."""
    return clip.with_name(clip.stem + COPY_SUFFIX)


def partial_path(path: Path) -> Path:
    """The temporary name a file is written under before it is renamed into place."""
    return path.with_name(path.name + ".part")


def _frame_count(stream: av.video.stream.VideoStream) -> int:
    """Frames in the stream: the container's count, else duration x frame rate, else 0 (unknown)."""
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration and stream.time_base and rate:
        return round(float(stream.duration * stream.time_base * rate))
    return 0


def transcode_h264(src: Path, dst: Path, on_frame: Callable[[int, int], None] | None = None) -> int:
    """Write an H.264 faststart MP4 of ``src``'s video at ``dst``; returns the frames written.

    ``on_frame(done, total)`` is called after each frame (``total`` 0 when unknown); an exception it raises stops
    the transcode (a low disk, a shutdown). Written under ``.part`` first: ``dst`` exists only when complete.
    """
    tmp = partial_path(dst)
    done = 0
    try:
        with (
            av.open(str(src)) as source,
            av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out,
        ):
            video = source.streams.video[0]
            time_base = video.time_base or Fraction(1, 90000)
            total = _frame_count(video)
            rate = video.average_rate or video.guessed_rate or Fraction(25)
            stream = out.add_stream("libx264", rate=rate, options={"preset": PRESET, "crf": CRF})
            stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
            stream.time_base = stream.codec_context.time_base = time_base
            stream.codec_context.thread_count = ENCODER_THREADS
            video.codec_context.thread_count = ENCODER_THREADS
            first: int | None = None
            last = -1
            for frame in source.decode(video):
                if first is None:
                    first = frame.pts or 0
                pts = last + 1 if frame.pts is None else max(frame.pts - first, last + 1)  # the clip starts at 0
                if frame.format.name != "yuv420p":  # 10-bit (Main 10) cameras: browsers' H.264 is 8-bit
                    frame = frame.reformat(format="yuv420p")
                frame.pts, frame.time_base, last = pts, time_base, pts
                out.mux(stream.encode(frame))
                done += 1
                if on_frame is not None:
                    on_frame(done, total)
            out.mux(stream.encode(None))
        if done == 0:
            raise ValueError("the clip has no decodable video frame")
        os.replace(tmp, dst)
    except BaseException:  # never leave a partial copy behind (a corrupt clip, a full disk, a shutdown)
        tmp.unlink(missing_ok=True)
        raise
    return done
