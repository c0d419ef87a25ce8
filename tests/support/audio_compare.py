"""Test helpers to check audio that went through a real path: alignment by cross-correlation, sample-exact matching
that tolerates inserted silence (a sound server's underruns), and an RTP receiver."""

from __future__ import annotations

import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from speakers.rtp_wire import RtpPacket, parse_rtp

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


@dataclass
class GapMatch:
    """Where the reference was found in a capture: ``start`` (capture index of reference[0]), silent ``gaps``
    inserted on the way as (reference index, length), and how much of the reference was matched."""

    start: int
    matched: int  # reference samples matched, in order, within the tolerance
    length: int  # len(reference)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    trailing_loud: int = 0  # capture samples louder than the tolerance after the reference's end
    problem: str = ""

    @property
    def complete(self) -> bool:
        return self.matched == self.length and not self.problem

    @property
    def gap_samples(self) -> int:
        return sum(length for _, length in self.gaps)


def match_with_gaps(
    captured: NDArray[np.integer], reference: NDArray[np.integer], tolerance: int = 2, max_gaps: int = 50
) -> GapMatch:
    """Walk ``reference`` through ``captured`` sample by sample, allowing only inserted silence.

    A sound server that runs dry renders silence and then goes on where it was: the capture is the reference
    with runs of (near) zeros inserted, after a silent lead. So the first loud sample of the capture is the first
    loud sample of the reference, and from there every sample must match within ``tolerance``, except for
    stretches of silence the capture has in addition. Anything else (a lost or changed sample, audio in the wrong
    order, noise where silence should be) stops the walk, and ``matched`` says how far it got.
    """
    cap = np.asarray(captured, dtype=np.int64)
    ref = np.asarray(reference, dtype=np.int64)
    loud_ref = np.flatnonzero(np.abs(ref) > tolerance)
    loud_cap = np.flatnonzero(np.abs(cap) > tolerance)
    if loud_ref.size == 0 or loud_cap.size == 0:
        return GapMatch(0, 0, ref.size, problem="nothing to find (silent reference or silent capture)")
    start = int(loud_cap[0]) - int(loud_ref[0])
    if start < 0:
        return GapMatch(start, 0, ref.size, problem=f"the capture starts {-start} samples into the reference")
    match = GapMatch(start, 0, ref.size)
    i, j = 0, start
    while True:
        n = min(ref.size - i, cap.size - j)
        bad = np.flatnonzero(np.abs(cap[j : j + n] - ref[i : i + n]) > tolerance)
        step = int(bad[0]) if bad.size else n
        i, j = i + step, j + step
        match.matched = i
        if i == ref.size:
            match.trailing_loud = int(np.count_nonzero(np.abs(cap[j:]) > tolerance))
            return match
        if j == cap.size:
            match.problem = f"the capture ends {ref.size - i} samples before the reference"
            return match
        # Mismatch at (i, j): only a silent insertion is allowed. The capture's next loud sample must then be the
        # reference's next loud sample; the quiet stretch in between is the gap plus the reference's own silence.
        later_cap = loud_cap[loud_cap >= j]
        later_ref = loud_ref[loud_ref >= i]
        if later_cap.size == 0 or later_ref.size == 0:
            match.problem = f"mismatch at reference sample {i} with no loud audio after it to resume on"
            return match
        gap = (int(later_cap[0]) - j) - (int(later_ref[0]) - i)
        if gap < 1 or len(match.gaps) >= max_gaps:
            match.problem = f"mismatch at reference sample {i} (capture {j}) that is not an inserted silence"
            return match
        match.gaps.append((i, gap))
        j += gap


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
