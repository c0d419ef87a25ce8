"""Incident clips: remux buffered packets into an MP4 (no re-encoding).

H.264 clips play in every browser. HEVC clips are tagged ``hvc1`` (parameter sets in the sample description), the
tag Safari and Chromium's hardware HEVC path accept; browsers without HEVC get a transcoded copy
(``monitor.ingest.transcode``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av

from monitor.ingest.prebuffer import BufferedPacket


@dataclass(frozen=True, slots=True)
class ClipResult:
    """What was written for a clip request."""

    path: Path | None
    start_ts: float | None
    end_ts: float | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ClipRequest:
    """Write the camera's video between two camera-clock times to ``path``, then call ``on_done``."""

    path: Path
    start_ts: float
    end_ts: float
    on_done: Callable[[ClipResult], None]


def write_clip(path: Path, template: av.video.stream.VideoStream, packets: Sequence[BufferedPacket]) -> ClipResult:
    """Mux ``packets`` (which must start on a keyframe) into a faststart MP4 at ``path``.

    Written to a temporary name first, so a crash never leaves a half-written clip under the real name.
    """
    if not packets:
        return ClipResult(None, None, None, "no video buffered for this time window")
    time_base = template.time_base
    if time_base is None:
        return ClipResult(None, None, None, "the stream has no time base")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    base = packets[0].dts
    last_dts = -1
    try:
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream_from_template(template)
            if template.codec_context.name == "hevc":
                # The muxer's default, hev1, is refused by browsers; with hvc1 it writes VPS/SPS/PPS into hvcC
                # (from the extradata, or from the first packet when a camera sends them only in-band).
                stream.codec_context.codec_tag = "hvc1"
            for item in packets:
                dts = max(item.dts - base, last_dts + 1)  # muxers need strictly increasing dts
                pkt = item.copy(time_base, pts=max(item.pts - base, dts), dts=dts)
                pkt.stream = stream
                out.mux(pkt)
                last_dts = dts
        os.replace(tmp, path)
    except BaseException:  # a full disk (or anything else): never leave the partial file behind
        tmp.unlink(missing_ok=True)
        raise
    return ClipResult(path, packets[0].ts, packets[-1].ts)
