"""A ring of the camera's encoded packets, so an incident clip can start before the incident."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from fractions import Fraction

import av


@dataclass(frozen=True, slots=True)
class BufferedPacket:
    """One encoded packet with its camera-clock time and unwrapped timestamps.

    ``pts``/``dts`` are in the stream's time base and keep increasing across file loops and
    reconnect-free glitches, so a clip can be muxed from any window of the ring.
    """

    ts: float
    pts: int
    dts: int
    duration: int
    keyframe: bool
    packet: av.Packet  # type: ignore[type-arg]  # PyAV's stubs make Packet generic over its stream

    def copy(self, time_base: Fraction, *, pts: int | None = None, dts: int | None = None) -> av.Packet:  # type: ignore[type-arg]
        """A new packet with this one's bytes for another muxer (the original stays with its demuxer's stream), at
        ``pts``/``dts`` when given (ticks of ``time_base``), else at this packet's unwrapped stamps."""
        pkt = av.Packet(bytes(self.packet))
        pkt.dts = self.dts if dts is None else dts
        pkt.pts = self.pts if pts is None else pts
        pkt.duration = self.duration
        pkt.time_base = time_base
        pkt.is_keyframe = self.keyframe
        return pkt


class PacketRing:
    """The last ``keep_s`` seconds of packets, always starting at a keyframe when it can."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._items: deque[BufferedPacket] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Drop everything (the packets belong to a stream that is gone)."""
        self._items.clear()

    def push(self, item: BufferedPacket) -> None:
        """Append a packet and evict whole GOPs that fell out of the window."""
        self._items.append(item)
        cutoff = item.ts - self.keep_s
        while self._items and self._items[0].ts < cutoff:
            # Only drop the head if the GOP it starts is entirely too old: find the next keyframe.
            next_key = next((i for i, p in enumerate(self._items) if i > 0 and p.keyframe), None)
            if next_key is None or self._items[next_key].ts > cutoff:
                break
            for _ in range(next_key):
                self._items.popleft()

    @property
    def newest_ts(self) -> float | None:
        """Camera time of the newest packet."""
        return self._items[-1].ts if self._items else None

    @property
    def oldest_ts(self) -> float | None:
        """Camera time of the oldest packet."""
        return self._items[0].ts if self._items else None

    def current_gop(self) -> list[BufferedPacket]:
        """Packets from the newest keyframe on (empty before the first one): what a decoder joining now needs."""
        items = list(self._items)
        start = next((i for i in range(len(items) - 1, -1, -1) if items[i].keyframe), None)
        return [] if start is None else items[start:]

    def window(self, start_ts: float, end_ts: float) -> list[BufferedPacket]:
        """Packets from the last keyframe at or before ``start_ts`` up to ``end_ts``.

        Starting on a keyframe makes the clip decodable from its first frame.
        """
        items = list(self._items)
        start = 0
        for i, p in enumerate(items):
            if p.keyframe and p.ts <= start_ts:
                start = i
            elif p.ts > start_ts:
                break
        while start < len(items) and not items[start].keyframe:
            start += 1
        return [p for p in items[start:] if p.ts <= end_ts]
