"""`monitor speaker test` against `monitor speaker listen`: two real processes, real UDP on loopback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from speakers import load_announcement
from tests.support.audio_compare import best_alignment
from tests.support.processes import free_port, stop


def test_speaker_test_is_heard_by_the_stand_in_horn(
    root: Path, tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    port = free_port(socket.SOCK_DGRAM)
    announcement = root / "announcements/disperse_en.wav"
    cfg = write_config(
        {
            "cameras": {"cam": {"url": str(root / "sample_videos/square.mp4")}},
            "speakers": {"horn": {"kind": "rtp", "host": "127.0.0.1", "port": port, "codec": "pcma"}},
        }
    )
    horn = subprocess.Popen(
        [sys.executable, "-m", "monitor", "speaker", "listen", "--port", str(port), "--out", str(tmp_path / "heard")],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        played = subprocess.run(
            [sys.executable, "-m", "monitor", "speaker", "test", "horn", "-c", str(cfg), "--file", str(announcement)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert played.returncode == 0, played.stderr
        time.sleep(1.5)
    finally:
        stop(horn, signal.SIGTERM)
    [wav] = sorted((tmp_path / "heard").glob("*.wav"))
    with wave.open(str(wav)) as w:
        assert w.getframerate() == 8000
        heard = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    sent = load_announcement(announcement, 8000).samples
    _, correlation = best_alignment(heard, sent)
    assert correlation > 0.99


def test_speaker_test_fails_when_nobody_listens(root: Path, write_config: Callable[..., Path]) -> None:
    port = free_port(socket.SOCK_DGRAM)
    cfg = write_config(
        {
            "cameras": {"cam": {"url": str(root / "sample_videos/square.mp4")}},
            "speakers": {"horn": {"kind": "rtp", "host": "127.0.0.1", "port": port}},
        }
    )
    played = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor",
            "speaker",
            "test",
            "horn",
            "-c",
            str(cfg),
            "--file",
            str(root / "announcements/disperse_en.wav"),
        ],
        capture_output=True,
        text=True,
    )
    assert played.returncode == 1
    assert "horn" in played.stderr and "FAILED" in played.stderr


def test_speaker_list_never_prints_credentials(root: Path, write_config: Callable[..., Path]) -> None:
    cfg = write_config(
        {
            "cameras": {"cam": {"url": str(root / "sample_videos/square.mp4")}},
            "speakers": {
                "gate": {"kind": "sip", "uri": "sip:horn@127.0.0.1:5060", "username": "u", "password": "hunter2"},
                "cam_horn": {"kind": "onvif", "url": "rtsp://admin:opensesame@127.0.0.1/stream"},
            },
        }
    )
    listed = subprocess.run(
        [sys.executable, "-m", "monitor", "speaker", "list", "-c", str(cfg)], capture_output=True, text=True, check=True
    )
    assert "gate: sip" in listed.stdout and "cam_horn: onvif" in listed.stdout
    assert "hunter2" not in listed.stdout and "opensesame" not in listed.stdout
    assert "rtsp://***@127.0.0.1/stream" in listed.stdout
