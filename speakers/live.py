"""Live audio to speakers (talk-down): a bounded feed of samples, a streaming resampler, and real-time pacing.

A talk's audio arrives in small frames while the operator speaks. Each speaker gets its own ``LiveFeed``: the
producer (the web socket) pushes without ever blocking, the speaker's sender takes fixed-size pieces. A feed holds
at most ``max_s`` of audio and drops the oldest beyond that (counted): memory stays bounded, and so does the delay
a slow speaker or a burst of late frames can add.

Pacing (``pace_live``): piece i is due at its slot ``t0 + i * ptime``, but a live source cannot run ahead of the
speaker, so a piece goes out at the later of its slot and the moment its audio arrived. When audio arrives more
than a piece late (the browser paused, the network stalled), the schedule restarts then: the RTP timestamp jumps
by the gap and the marker bit starts a new talkspurt (RFC 3551 §4.1), so the speaker does not rush the late audio.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np
from numpy.typing import NDArray

from speakers.audio import Pcm, apply_gain
from speakers.rtp_wire import RtpFormat, encode_payload, pack_header

TALK_MAX_S = 3600.0  # a talk's hard limit on any backend, whatever the caller does (the caller ends talks sooner)
LIVE_BUFFER_S = 0.3  # packet backends (rtp, sip, onvif): the most audio a slow or late sender may hold back
POLL_S = 0.1  # how often a waiting sender looks at its stop event

Samples = NDArray[np.int16]
_EMPTY: Samples = np.zeros(0, dtype=np.int16)


@dataclass
class LiveStats:
    """What one speaker's sender delivered: for the talk's audit record."""

    packets: int = 0  # RTP packets, HTTP phrases or sound-card writes
    bytes: int = 0  # on the wire (headers included) or to the device
    samples: int = 0  # audio samples sent
    dropped_samples: int = 0  # lost because the sender fell behind by more than the feed holds
    first_sent: float | None = None  # time.monotonic() of the first audio sent

    def sent(self, samples: int, size: int) -> None:
        """Count one piece of audio that went out."""
        if self.first_sent is None:
            self.first_sent = time.monotonic()
        self.packets += 1
        self.bytes += size
        self.samples += samples


class LiveFeed:
    """Audio for one speaker at its rate, from one producer thread to one sender thread (see module docstring)."""

    def __init__(self, rate: int, max_s: float = LIVE_BUFFER_S) -> None:
        self.rate = rate
        self.max_samples = max(1, int(rate * max_s))
        self.stats = LiveStats()
        self._chunks: deque[Samples] = deque()
        self._size = 0
        self._ended = False
        self._cond = threading.Condition()

    def push(self, samples: Samples) -> None:
        """Add audio; never blocks. Beyond ``max_s`` the oldest audio goes (counted in ``stats``)."""
        if not len(samples):
            return
        with self._cond:
            if self._ended:
                return
            self._chunks.append(samples)
            self._size += len(samples)
            excess = self._size - self.max_samples
            if excess > 0:
                self._pop(excess)
                self.stats.dropped_samples += excess
            self._cond.notify()

    def end(self) -> None:
        """No more audio: the sender plays what is left and returns."""
        with self._cond:
            self._ended = True
            self._cond.notify()

    @property
    def buffered_s(self) -> float:
        """Audio waiting to be sent."""
        with self._cond:
            return self._size / self.rate

    def take(self, n: int, wait_s: float, partial: bool = False) -> Samples | None:
        """Exactly ``n`` samples, waiting up to ``wait_s`` for them; None once ended and empty.

        After the end, the rest (fewer than ``n``). On timeout an empty array, or with ``partial`` whatever is there.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._size >= n or self._ended, timeout=wait_s)
            if self._size >= n:
                return self._pop(n)
            if self._ended and not self._size:
                return None
            if self._ended or partial:
                return self._pop(self._size)
            return _EMPTY

    def _pop(self, n: int) -> Samples:
        """The oldest ``n`` samples (lock held)."""
        parts: list[Samples] = []
        need = n
        while need:
            head = self._chunks[0]
            if len(head) <= need:
                parts.append(self._chunks.popleft())
                need -= len(head)
            else:
                parts.append(head[:need])
                self._chunks[0] = head[need:]
                need = 0
        self._size -= n
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


class StreamResampler:
    """Mono int16 from one rate to another, chunk by chunk, with FFmpeg's swresample (no clicks at chunk edges)."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.from_rate, self.to_rate = from_rate, to_rate
        self._resampler = None if from_rate == to_rate else av.AudioResampler(format="s16", layout="mono", rate=to_rate)

    def __call__(self, samples: Samples) -> Samples:
        """The resampled audio available so far (the filter holds back a few samples until the next call)."""
        if self._resampler is None or not len(samples):
            return samples
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.from_rate
        return _joined(self._resampler.resample(frame))

    def flush(self) -> Samples:
        """What the filter still holds, at the end of the stream."""
        return _EMPTY if self._resampler is None else _joined(self._resampler.resample(None))


def _joined(frames: list[av.AudioFrame]) -> Samples:
    parts = [np.asarray(f.to_ndarray(), dtype=np.int16).reshape(-1) for f in frames]
    return np.concatenate(parts) if parts else _EMPTY


def pace_live(
    feed: LiveFeed,
    piece: int,
    send: Callable[[Samples, int, bool], int],
    sleep: Callable[[float], None],
    gain_db: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Send the feed in pieces of ``piece`` samples in real time (see module docstring) until it ends.

    ``send(samples, slot, resumed)`` puts one piece on the wire and returns the bytes sent; ``slot`` counts pieces
    since the start on the schedule (gaps included: the RTP timestamp), ``resumed`` marks the first piece after a
    start or a gap. The last piece may be short. ``sleep`` is called at least every POLL_S, so a ``sleep`` that
    raises (stop, deadline) ends the stream promptly even when no audio comes.
    """
    piece_s = piece / feed.rate
    due: float | None = None
    slot, resumed = 0, True
    while (samples := feed.take(piece, POLL_S)) is not None:
        if not len(samples):
            sleep(0.0)
            continue
        now = clock()
        if due is None:
            due = now
        elif now > due + piece_s:  # audio came late: restart the schedule now, skipping the slots it missed
            slot += int((now - due) / piece_s)
            due, resumed = now, True
        sleep(max(due - clock(), 0.0))
        size = send(apply_gain(Pcm(samples, feed.rate), gain_db).samples, slot, resumed)
        feed.stats.sent(len(samples), size)
        slot, resumed, due = slot + 1, False, due + piece_s


def send_live_rtp(
    send: Callable[[bytes], object],
    feed: LiveFeed,
    fmt: RtpFormat,
    sleep: Callable[[float], None],
    gain_db: float = 0.0,
) -> None:
    """The feed as RTP packets of ``fmt`` (a short last packet is padded with silence), paced by ``pace_live``."""
    seq0, ts0, ssrc = secrets.randbits(16), secrets.randbits(32), secrets.randbits(32)
    spp = fmt.samples_per_packet
    count = [0]

    def packet(samples: Samples, slot: int, resumed: bool) -> int:
        if len(samples) < spp:
            samples = np.concatenate([samples, np.zeros(spp - len(samples), dtype=np.int16)])
        header = pack_header(fmt.payload_type, seq0 + count[0], ts0 + slot * spp, ssrc, marker=resumed)
        data = header + encode_payload(fmt.codec, samples)
        count[0] += 1
        send(data)
        return len(data)

    pace_live(feed, spp, packet, sleep, gain_db)
