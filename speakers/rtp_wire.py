"""RTP on the wire (RFC 3550/3551): formats, packets, parsing and real-time pacing.

Shared by every backend that sends RTP (plain RTP, SIP paging, the ONVIF back-channel) and by the stand-in horn
that receives it; no backend imports, so any module can use it. Packets are paced in real time because a
speaker's jitter buffer is only a few packets deep: sending faster overflows it, and pacing by relative sleeps
drifts (each sleep overshoots), so every packet has an absolute deadline ``t0 + i * ptime``.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from speakers import g711

Codec = Literal["pcmu", "pcma", "l16"]

RTP_VERSION = 2
PAYLOAD_TYPES: dict[Codec, int] = {"pcmu": 0, "pcma": 8, "l16": 96}  # 96: dynamic, a=rtpmap:96 L16/<rate>
G711_RATE = 8000
DEFAULT_L16_RATE = 16000
_HEADER = struct.Struct("!BBHII")
HEADER_SIZE = _HEADER.size


@dataclass(frozen=True)
class RtpFormat:
    """What goes on the wire: codec, payload type, clock rate and packet size."""

    codec: Codec
    payload_type: int
    rate: int
    samples_per_packet: int

    @property
    def ptime_s(self) -> float:
        """Audio duration of one packet, in seconds."""
        return self.samples_per_packet / self.rate


def rtp_format(codec: Codec, rate: int | None, ptime_ms: int) -> RtpFormat:
    """Validate codec/rate/ptime; raises ValueError, since G.711 is only defined at 8 kHz."""
    if codec in ("pcmu", "pcma"):
        if rate not in (None, G711_RATE):
            raise ValueError(f"{codec} is only defined at {G711_RATE} Hz, not {rate} Hz")
        rate = G711_RATE
    elif rate is None:
        rate = DEFAULT_L16_RATE
    if rate <= 0 or (rate * ptime_ms) % 1000:
        raise ValueError(f"ptime {ptime_ms} ms is not a whole number of samples at {rate} Hz")
    return RtpFormat(codec, PAYLOAD_TYPES[codec], rate, rate * ptime_ms // 1000)


def pack_header(payload_type: int, seq: int, timestamp: int, ssrc: int, marker: bool = False) -> bytes:
    """The 12-byte RTP fixed header (version 2, no padding/extension/CSRC); seq and timestamp wrap."""
    first = RTP_VERSION << 6
    second = (0x80 if marker else 0) | (payload_type & 0x7F)
    return _HEADER.pack(first, second, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF)


def encode_payload(codec: Codec, samples: NDArray[np.int16]) -> bytes:
    """int16 samples -> payload bytes; L16 is big-endian (network order, RFC 3551 §4.5.11)."""
    if codec == "pcmu":
        return g711.ulaw_encode(samples).tobytes()
    if codec == "pcma":
        return g711.alaw_encode(samples).tobytes()
    return samples.astype(">i2").tobytes()


def packetize(samples: NDArray[np.int16], fmt: RtpFormat) -> list[bytes]:
    """Split into encoded payloads of exactly one ptime each; the last is padded with silence.

    Equal-sized packets keep timestamps and pacing uniform, which simple hardware speakers expect.
    """
    spp = fmt.samples_per_packet
    n_packets = -(-len(samples) // spp)
    padded = np.zeros(n_packets * spp, dtype=np.int16)
    padded[: len(samples)] = samples
    return [encode_payload(fmt.codec, padded[i : i + spp]) for i in range(0, len(padded), spp)]


def rtp_packets(payloads: Sequence[bytes], fmt: RtpFormat, seq0: int, ts0: int, ssrc: int) -> Iterator[bytes]:
    """Header + payload for each packet: contiguous seq, timestamps in samples, marker on the first only."""
    for i, payload in enumerate(payloads):
        header = pack_header(fmt.payload_type, seq0 + i, ts0 + i * fmt.samples_per_packet, ssrc, marker=i == 0)
        yield header + payload


def send_paced(
    send: Callable[[bytes], object],
    packets: Sequence[bytes],
    ptime_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Send packet i at ``t0 + i * ptime_s`` and return at ``t0 + len(packets) * ptime_s``.

    Absolute deadlines: sleep overshoot is not accumulated, so a long announcement does not drift; returning
    only when the last packet's audio is due makes back-to-back announcements follow each other seamlessly.
    ``sleep`` is called before every packet, with 0 when the sender is behind, so a ``sleep`` that raises (a stop
    request, a passed deadline) ends the stream within one packet even under load.
    """
    t0 = clock()
    for i, packet in enumerate(packets):
        _sleep_until(t0 + i * ptime_s, clock, sleep)
        send(packet)
    _sleep_until(t0 + len(packets) * ptime_s, clock, sleep)


def _sleep_until(deadline: float, clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
    sleep(max(deadline - clock(), 0.0))


@dataclass(frozen=True)
class RtpPacket:
    """One received RTP packet, with its fixed-header fields parsed."""

    arrival: float  # time.monotonic() when received
    version: int
    padding: bool
    extension: bool
    csrc_count: int
    marker: bool
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    header: bytes  # the raw 12-byte fixed header
    ttl: int | None = None  # IP TTL on arrival, when the receiver records it


def parse_rtp(data: bytes, arrival: float, ttl: int | None = None) -> RtpPacket:
    """Parse RFC 3550 fixed header; skips CSRCs, header extension and padding to find the payload."""
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
    offset = _HEADER.size + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        _, words = struct.unpack_from("!HH", data, offset)
        offset += 4 + 4 * words
    end = len(data) - (data[-1] if b0 & 0x20 else 0)
    return RtpPacket(
        arrival=arrival,
        version=b0 >> 6,
        padding=bool(b0 & 0x20),
        extension=bool(b0 & 0x10),
        csrc_count=b0 & 0x0F,
        marker=bool(b1 & 0x80),
        payload_type=b1 & 0x7F,
        seq=seq,
        timestamp=ts,
        ssrc=ssrc,
        payload=data[offset:end],
        header=data[: _HEADER.size],
        ttl=ttl,
    )
