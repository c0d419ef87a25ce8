"""A UDP socket on loopback that collects RTP packets, standing in for an IP horn speaker."""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field


@dataclass
class RtpListener:
    """Receives RTP in a thread until closed; ``announcements`` counts marker-bit packets."""

    sock: socket.socket = field(default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    packets: list[tuple[float, int, int, bytes]] = field(default_factory=list)  # (arrival, marker, seq, payload)

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The UDP port to send to."""
        return int(self.sock.getsockname()[1])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            if len(data) >= 12 and data[0] >> 6 == 2:
                marker = data[1] >> 7
                (seq,) = struct.unpack("!H", data[2:4])
                self.packets.append((time.monotonic(), marker, seq, data[12:]))

    @property
    def announcements(self) -> int:
        """How many announcements started (the marker bit is set on each one's first packet)."""
        return sum(marker for _, marker, _, _ in self.packets)

    def close(self) -> None:
        """Stop receiving."""
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
