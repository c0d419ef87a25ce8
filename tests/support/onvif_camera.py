"""A camera with an ONVIF audio back-channel (GStreamer's ONVIF RTSP server in a child process).

The server runs under Debian's /usr/bin/python3 (it has python3-gi) and writes the raw mu-law it receives on the
back-channel to a file; ``plain=True`` starts an RTSP server without back-channel support instead.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from speakers import g711
from tests.support.processes import stop
from tests.support.rtsp import SYS_PY

SERVER = Path(__file__).with_name("onvif_backchannel_server.py")


@dataclass
class OnvifCamera:
    proc: subprocess.Popen[str]
    url: str
    received_file: Path | None

    def received(self, settle_s: float = 0.3, timeout: float = 5.0) -> NDArray[np.int16]:
        """Decoded audio the camera got on its back-channel, once the file stopped growing."""
        assert self.received_file is not None
        deadline, last = time.monotonic() + timeout, -1
        while time.monotonic() < deadline:
            size = self.received_file.stat().st_size if self.received_file.exists() else 0
            if size == last and size > 0:
                break
            last = size
            time.sleep(settle_s)
        return g711.ulaw_decode(np.fromfile(self.received_file, dtype=np.uint8))

    def close(self) -> None:
        stop(self.proc)


def start_camera(directory: Path, plain: bool = False) -> OnvifCamera:
    out = None if plain else directory / "backchannel.ulaw"
    args = [SYS_PY, str(SERVER), "--port", "0", *(["--plain"] if plain else ["--out", str(out)])]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        stop(proc)
        raise RuntimeError(f"ONVIF test camera failed to start: {line!r}")
    return OnvifCamera(proc, line.split()[1], out)
