"""A camera's packets as the rest of ingest needs them: increasing timestamps, files paced and looped like cameras.

Shared by the stream worker (decode for detection, pre-event buffer) and the live feed (remux for browsers), so
both see the same timeline for a file camera and the same repair of repeated timestamps from a live one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import av


@dataclass(frozen=True, slots=True)
class PacedPacket:
    """A demuxed packet with stamps unwrapped across file loops (ticks of the stream's time base).

    ``ts`` is the camera time of the packet (wall clock when it arrived; for a file, the wall clock at its start
    plus the packet's media time), ``due`` the wall clock at which it was handed over (equal for a live stream).
    """

    packet: av.Packet  # type: ignore[type-arg]  # PyAV's stubs make Packet generic over its stream
    ts: float
    due: float
    pts: int
    dts: int
    duration: int


def paced_packets(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    *,
    is_file: bool,
    loop: bool,
    speed: float,
    stop: threading.Event,
    label: str,
    on_loop: Callable[[], None] | None = None,
) -> Iterator[PacedPacket]:
    """Demux ``stream`` until ``stop`` or its end; a file is paced at ``speed`` and, with ``loop``, starts over.

    A live stream that ends simply returns (the caller reconnects). ``on_loop`` runs before a file starts over
    (e.g. to flush a decoder). ``label`` names the source in errors (redacted: no credentials).
    """
    if stream.time_base is None:
        raise ValueError(f"video stream of {label} has no time base")
    tb = float(stream.time_base)
    offset = 0  # added to pts/dts: keeps timestamps increasing across file loops
    span = 0  # end of the last pass, in ticks
    last_dts: int | None = None
    t0_wall = time.time()
    t0_media: float | None = None
    while not stop.is_set():
        got_any = False
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            got_any = True
            dts = packet.dts if packet.dts is not None else packet.pts
            dts = (0 if last_dts is None else last_dts + 1) if dts is None else dts + offset
            if last_dts is not None and dts <= last_dts:
                dts = last_dts + 1  # live streams repeat timestamps at times; muxers need them increasing
            pts = max(dts, packet.pts + offset) if packet.pts is not None else dts
            duration = packet.duration or 0
            span = max(span, pts + duration - offset)
            last_dts = dts
            if is_file:
                if t0_media is None:
                    t0_media = dts * tb
                media = dts * tb - t0_media
                due = t0_wall + media / speed
                if (wait := due - time.time()) > 0 and stop.wait(wait):
                    return
                yield PacedPacket(packet, t0_wall + media, due, pts, dts, duration)
            else:
                now = time.time()
                yield PacedPacket(packet, now, now, pts, dts, duration)
            if stop.is_set():
                return
        if not is_file:
            return  # a live stream that ends is a disconnect: the caller reconnects
        if not got_any:
            raise ValueError(f"no decodable video in {label}")
        if not loop:
            return
        container.seek(0)
        if on_loop is not None:
            on_loop()
        offset += span
        span = 0
