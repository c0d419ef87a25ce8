"""Text to speech with espeak-ng: a WAV file any speaker plays like a recorded announcement.

Rendered once per (text, voice, speed) and cached under the caller's directory by digest, so a broadcast that
plays every day, or a repeated message, runs espeak-ng only the first time. espeak-ng runs as a subprocess with
a time limit; the text goes in on stdin (never as an argument, where a leading '-' would read as an option).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

TIMEOUT_S = 30.0
SPEED_WPM = 150  # like scripts/make_announcements.sh
INSTALL = "apt-get install espeak-ng"


class TtsError(RuntimeError):
    """The text could not be spoken: espeak-ng or the voice is missing, or it failed or took too long."""


def _espeak() -> str:
    found = shutil.which("espeak-ng")
    if found is None:
        raise TtsError(f"espeak-ng is not installed ({INSTALL})")
    return found


def voice_problem(voice: str) -> str | None:
    """Why ``voice`` cannot speak (espeak-ng or the voice missing), or None."""
    try:
        _run(["-q", "-v", voice], "a")
    except TtsError as exc:
        return str(exc)
    return None


def speak(text: str, voice: str, cache_dir: Path, speed_wpm: int = SPEED_WPM) -> Path:
    """A WAV file of ``text`` spoken by espeak-ng's ``voice``; cached in ``cache_dir``. Raises TtsError."""
    digest = hashlib.sha256(f"{voice}\0{speed_wpm}\0{text}".encode()).hexdigest()[:32]
    path = cache_dir / f"{digest}.wav"
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        _run(["-v", voice, "-s", str(speed_wpm), "-w", str(part)], text)
        os.replace(part, path)  # readers never see a half-written file
    finally:
        part.unlink(missing_ok=True)
    return path


def _run(args: list[str], text: str) -> None:
    try:
        done = subprocess.run(
            [_espeak(), "-b", "1", "--stdin", *args],  # -b 1: the input is UTF-8
            input=text.encode(),
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TtsError(f"espeak-ng took longer than {TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise TtsError(f"espeak-ng did not run: {exc}") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        if "voice does not exist" in message:
            voice = args[args.index("-v") + 1]
            raise TtsError(f"no espeak-ng voice '{voice}' installed ({INSTALL}; espeak-ng --voices lists them)")
        raise TtsError(f"espeak-ng failed (exit {done.returncode}): {message or 'no message'}")
