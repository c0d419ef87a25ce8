"""A video file's real packets as the engine's pre-event ring holds them, for the clip writer's tests."""

from __future__ import annotations

from pathlib import Path

import av

from monitor.ingest.prebuffer import BufferedPacket

Packets = tuple[av.video.stream.VideoStream, list[BufferedPacket], av.container.InputContainer]


def packets(video: Path, seconds: float) -> Packets:
    """The first ``seconds`` of ``video`` as buffered packets (the container stays open: packets refer to it)."""
    container = av.open(str(video))
    stream = container.streams.video[0]
    assert stream.time_base is not None
    out = []
    for packet in container.demux(stream):
        if packet.dts is None or packet.pts is None:
            continue
        ts = float(packet.pts * stream.time_base)
        if ts > seconds:
            break
        out.append(BufferedPacket(ts, packet.pts, packet.dts, packet.duration or 0, packet.is_keyframe, packet))
    return stream, out, container
