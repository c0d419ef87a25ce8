"""Test helpers to check audio that went through a real path: alignment by cross-correlation, and an RTP receiver."""

from __future__ import annotations

import socket
import sys
import threading
import time
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from speakers.rtp import RtpPacket, parse_rtp

_T = TypeVar("_T", bound=np.generic)
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)  # Linux value; Python 3.11's socket module lacks the name


def best_alignment(captured: NDArray[np.integer], reference: NDArray[np.integer]) -> tuple[int, float]:
    """Where ``reference`` sits in ``captured``: (lag, normalised correlation over the overlap).

    ``captured[lag + k]`` lines up with ``reference[k]``; a negative lag means the capture starts inside the
    reference. FFT cross-correlation, so a minute of audio takes milliseconds.
    """
    cap = np.asarray(captured, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if cap.size == 0 or ref.size == 0:
        return 0, 0.0
    nfft = 1 << (cap.size + ref.size - 1).bit_length()
    xc = np.fft.irfft(np.fft.rfft(cap, nfft) * np.conj(np.fft.rfft(ref, nfft)), nfft)
    # xc[k] = sum cap[n + k] * ref[n]; lags >= 0 at the front, negative lags wrap to the back.
    lags = np.concatenate([np.arange(cap.size), np.arange(-(ref.size - 1), 0)])
    values = np.concatenate([xc[: cap.size], xc[nfft - (ref.size - 1) :]])
    lag = int(lags[int(np.argmax(values))])
    seg_cap, seg_ref = aligned(cap, ref, lag)
    denom = float(np.linalg.norm(seg_cap) * np.linalg.norm(seg_ref))
    return lag, float(np.dot(seg_cap, seg_ref) / denom) if denom > 0 else 0.0


def aligned(captured: NDArray[_T], reference: NDArray[_T], lag: int) -> tuple[NDArray[_T], NDArray[_T]]:
    """The overlapping parts of ``captured`` and ``reference`` when the reference starts at ``lag``."""
    cap_start, ref_start = max(lag, 0), max(-lag, 0)
    n = max(0, min(len(captured) - cap_start, len(reference) - ref_start))
    return captured[cap_start : cap_start + n], reference[ref_start : ref_start + n]


class RtpReceiver(threading.Thread):
    """Collects RTP packets from ``sock`` until ``idle`` seconds pass without one (after the first), or ``overall``.

    With ``record_ttl`` (IPv4, Linux) each packet carries the IP TTL it arrived with, to check multicast TTL.
    """

    def __init__(self, sock: socket.socket, idle: float = 0.5, overall: float = 30.0, record_ttl: bool = False) -> None:
        super().__init__(daemon=True)
        self.sock, self.idle, self.overall = sock, idle, overall
        self.packets: list[RtpPacket] = []
        if record_ttl:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)

    def run(self) -> None:
        deadline = time.monotonic() + self.overall
        self.sock.settimeout(0.05)
        last: float | None = None
        while time.monotonic() < deadline:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(4))
            except TimeoutError:
                if last is not None and time.monotonic() - last > self.idle:
                    break
                continue
            last = time.monotonic()
            self.packets.append(parse_rtp(data, last, _ttl_from(ancillary)))

    def in_seq_order(self) -> list[RtpPacket]:
        """Packets ordered by 16-bit sequence number relative to the first received (handles wrap-around)."""
        if not self.packets:
            return []
        base = self.packets[0].seq

        def key(p: RtpPacket) -> int:
            delta = (p.seq - base) & 0xFFFF
            return delta if delta < 0x8000 else delta - 0x10000

        return sorted(self.packets, key=key)

    def payload(self) -> bytes:
        """All payloads concatenated in sequence order."""
        return b"".join(p.payload for p in self.in_seq_order())


def _ttl_from(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == socket.IP_TTL and len(data) >= 4:
            return int.from_bytes(data[:4], sys.byteorder, signed=True)
    return None
