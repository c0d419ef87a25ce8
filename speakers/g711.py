"""G.711 mu-law (PCMU) and A-law (PCMA) in NumPy, bit-identical to CPython's ``audioop`` (width 2).

Own implementation because ``audioop`` is deprecated and removed in Python 3.13, and ``audioop-lts`` only
installs on 3.13+. Encoding goes through 64 K-entry lookup tables built once at import (~1 ms per minute of audio).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

_IntArray = NDArray[np.int32]

_SEG_UEND = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_SEG_AEND = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _ulaw_encode(x: _IntArray) -> NDArray[np.uint8]:
    """Reference mu-law encoder (Sun g711.c as used by audioop), vectorised."""
    v = x >> 2  # 14-bit magnitude domain
    mask = np.where(v < 0, 0x7F, 0xFF)
    v = np.minimum(np.abs(v), 8159) + 33  # clip, add bias
    seg = np.searchsorted(_SEG_UEND, v)  # first segment whose end >= v
    s7 = np.minimum(seg, 7)
    u = np.where(seg >= 8, 0x7F, (s7 << 4) | ((v >> (s7 + 1)) & 0xF))
    return (u ^ mask).astype(np.uint8)


def _ulaw_decode(u: _IntArray) -> NDArray[np.int16]:
    """Reference mu-law decoder."""
    u = (~u) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _alaw_encode(x: _IntArray) -> NDArray[np.uint8]:
    """Reference A-law encoder, vectorised."""
    v = x >> 3  # 13-bit domain
    mask = np.where(v >= 0, 0xD5, 0x55)
    v = np.where(v >= 0, v, -v - 1)
    seg = np.searchsorted(_SEG_AEND, v)
    s7 = np.minimum(seg, 7)
    q = np.where(seg < 2, (v >> 1) & 0xF, (v >> s7) & 0xF)
    a = np.where(seg >= 8, 0x7F, (s7 << 4) | q)
    return (a ^ mask).astype(np.uint8)


def _alaw_decode(a: _IntArray) -> NDArray[np.int16]:
    """Reference A-law decoder."""
    a = a ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, np.where(seg == 1, t + 0x108, (t + 0x108) << np.maximum(seg - 1, 0)))
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32)
_ALL_CODES = np.arange(256, dtype=np.int32)
ULAW_ENCODE_TABLE: NDArray[np.uint8] = _ulaw_encode(_ALL_INT16)  # index: sample + 32768
ALAW_ENCODE_TABLE: NDArray[np.uint8] = _alaw_encode(_ALL_INT16)
ULAW_DECODE_TABLE: NDArray[np.int16] = _ulaw_decode(_ALL_CODES)  # index: code byte
ALAW_DECODE_TABLE: NDArray[np.int16] = _alaw_decode(_ALL_CODES)
for _table in (ULAW_ENCODE_TABLE, ALAW_ENCODE_TABLE, ULAW_DECODE_TABLE, ALAW_DECODE_TABLE):
    _table.setflags(write=False)


def ulaw_encode(samples: NDArray[np.int16]) -> NDArray[np.uint8]:
    """int16 samples -> mu-law code bytes."""
    return ULAW_ENCODE_TABLE[samples.astype(np.int32) + 32768]


def ulaw_decode(codes: NDArray[np.uint8]) -> NDArray[np.int16]:
    """mu-law code bytes -> int16 samples."""
    return ULAW_DECODE_TABLE[codes]


def alaw_encode(samples: NDArray[np.int16]) -> NDArray[np.uint8]:
    """int16 samples -> A-law code bytes."""
    return ALAW_ENCODE_TABLE[samples.astype(np.int32) + 32768]


def alaw_decode(codes: NDArray[np.uint8]) -> NDArray[np.int16]:
    """A-law code bytes -> int16 samples."""
    return ALAW_DECODE_TABLE[codes]


def lin2ulaw(pcm16: bytes) -> bytes:
    """Drop-in for ``audioop.lin2ulaw(pcm16, 2)`` (native little-endian input)."""
    return ulaw_encode(np.frombuffer(pcm16, dtype="<i2")).tobytes()


def ulaw2lin(data: bytes) -> bytes:
    """Drop-in for ``audioop.ulaw2lin(data, 2)``."""
    return ulaw_decode(np.frombuffer(data, dtype=np.uint8)).astype("<i2").tobytes()


def lin2alaw(pcm16: bytes) -> bytes:
    """Drop-in for ``audioop.lin2alaw(pcm16, 2)``."""
    return alaw_encode(np.frombuffer(pcm16, dtype="<i2")).tobytes()


def alaw2lin(data: bytes) -> bytes:
    """Drop-in for ``audioop.alaw2lin(data, 2)``."""
    return alaw_decode(np.frombuffer(data, dtype=np.uint8)).astype("<i2").tobytes()
