"""Mono 16-bit PCM, the one audio format every speaker backend accepts, and loading of announcement files."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray

_INT16_MIN, _INT16_MAX = -32768, 32767


class AnnouncementError(ValueError):
    """An announcement file is missing or cannot be decoded; the message names the file."""


@dataclass(frozen=True, eq=False)
class Pcm:
    """Mono signed 16-bit audio at ``rate`` Hz.

    ``eq=False`` because comparing NumPy arrays with ``==`` does not give a bool; compare ``samples`` explicitly.
    """

    samples: NDArray[np.int16]
    rate: int

    def __post_init__(self) -> None:
        if self.samples.ndim != 1 or self.samples.dtype != np.int16:
            raise ValueError(f"Pcm needs 1-D int16 samples, got {self.samples.ndim}-D {self.samples.dtype}")
        if self.rate <= 0:
            raise ValueError(f"Pcm rate must be positive, got {self.rate}")

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.rate


def load_announcement(path: Path | str, rate: int) -> Pcm:
    """Decode ``path`` (WAV/MP3/OGG/... anything FFmpeg reads) to mono int16 at ``rate``.

    Cached per (resolved path, mtime, size, rate): announcements are played over and over, and an edited
    file is picked up without a restart. The returned samples are read-only because they are shared.
    """
    resolved = Path(path).expanduser().resolve()
    try:
        st = resolved.stat()
    except OSError as exc:
        raise AnnouncementError(f"announcement file {str(path)!r} not found or unreadable: {exc.strerror}") from exc
    if not resolved.is_file():
        raise AnnouncementError(f"announcement file {str(path)!r} is not a regular file")
    return _load_cached(resolved, st.st_mtime_ns, st.st_size, rate)


@functools.lru_cache(maxsize=32)
def _load_cached(path: Path, mtime_ns: int, size: int, rate: int) -> Pcm:
    """Cache key carries mtime and size so a replaced file is decoded again."""
    del mtime_ns, size  # only part of the cache key
    samples = _decode_mono_s16(path, rate)
    samples.setflags(write=False)
    return Pcm(samples, rate)


def _decode_mono_s16(path: Path, rate: int) -> NDArray[np.int16]:
    """Decode the first audio stream, downmixed and resampled by FFmpeg's swresample."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AnnouncementError(f"announcement file {str(path)!r} has no audio stream")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            chunks: list[NDArray[np.int16]] = []
            for frame in container.decode(container.streams.audio[0]):
                chunks.extend(_mono_s16(f) for f in resampler.resample(frame))
            chunks.extend(_mono_s16(f) for f in resampler.resample(None))  # flush
    except av.error.FFmpegError as exc:
        raise AnnouncementError(f"announcement file {str(path)!r} cannot be decoded: {exc}") from exc
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise AnnouncementError(f"announcement file {str(path)!r} contains no audio samples")
    return np.concatenate(chunks)


def _mono_s16(frame: av.AudioFrame) -> NDArray[np.int16]:
    """Packed s16 mono frame -> 1-D int16 (to_ndarray gives shape (1, n))."""
    return np.asarray(frame.to_ndarray(), dtype=np.int16).reshape(-1)


def apply_gain(pcm: Pcm, gain_db: float) -> Pcm:
    """Scale by ``gain_db`` decibels, clipping to int16 rather than wrapping around (wrap = loud clicks)."""
    if gain_db == 0:
        return pcm
    scaled = np.rint(pcm.samples.astype(np.float64) * (10.0 ** (gain_db / 20.0)))
    return Pcm(np.clip(scaled, _INT16_MIN, _INT16_MAX).astype(np.int16), pcm.rate)
