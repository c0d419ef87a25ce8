"""A stand-in RTP horn: receives announcements sent to a UDP port and saves each as a WAV file.

Integrators use it (`monitor speaker listen`) to check the network path before the real speaker is
installed, and the sample run uses it so the demo's announcement is heard somewhere real.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from speakers import g711
from speakers.rtp_wire import DEFAULT_L16_RATE, G711_RATE, RtpPacket, parse_rtp

log = logging.getLogger(__name__)


def decode_payload(packet: RtpPacket) -> tuple[NDArray[np.int16], int]:
    """Samples and rate of one packet (PCMU, PCMA, or L16 on a dynamic payload type)."""
    data = np.frombuffer(packet.payload, dtype=np.uint8)
    if packet.payload_type == 0:
        return g711.ulaw_decode(data), G711_RATE
    if packet.payload_type == 8:
        return g711.alaw_decode(data), G711_RATE
    return np.frombuffer(packet.payload, dtype=">i2").astype(np.int16), DEFAULT_L16_RATE


@dataclass
class _Take:
    ssrc: int
    rate: int
    chunks: list[NDArray[np.int16]] = field(default_factory=list)
    last: float = 0.0


class RtpRecorder:
    """Listens on ``host:port``; one WAV per announcement (a new SSRC, or a marker after a pause)."""

    def __init__(self, out_dir: Path, host: str = "127.0.0.1", port: int = 5004, idle_s: float = 1.0) -> None:
        self.out_dir = out_dir
        self.idle_s = idle_s
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.1)
        self.saved: list[Path] = []
        self._stop = threading.Event()

    def serve(self) -> None:
        """Receive until ``stop()``; saves the announcement in progress on the way out."""
        take: _Take | None = None
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                if take is not None and time.monotonic() - take.last > self.idle_s:
                    self._save(take)
                    take = None
                continue
            if len(data) < 12 or data[0] >> 6 != 2:
                continue
            packet = parse_rtp(data, time.monotonic())
            samples, rate = decode_payload(packet)
            if take is not None and (packet.ssrc != take.ssrc or packet.marker):
                self._save(take)
                take = None
            if take is None:
                take = _Take(packet.ssrc, rate)
            take.chunks.append(samples)
            take.last = packet.arrival
        if take is not None:
            self._save(take)
        self.sock.close()

    def stop(self) -> None:
        """Ask ``serve`` to return."""
        self._stop.set()

    def _save(self, take: _Take) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{take.ssrc:08x}.wav"
        samples = np.concatenate(take.chunks)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(take.rate)
            w.writeframes(samples.astype("<i2").tobytes())
        self.saved.append(path)
        log.info("horn: received %.1f s of audio -> %s", len(samples) / take.rate, path)
