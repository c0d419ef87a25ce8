"""A real small file system that tests fill up (a tmpfs mounted as root), for disk-full behaviour."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` for the block (root only; the test is skipped otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill up needs root")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs on {path}: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)  # still busy: detach it now, freed when unused


def fill(directory: Path, name: str = "filler", leave_bytes: int = 0) -> Path:
    """Write zeros into ``directory/name`` until the file system is full (or only ``leave_bytes`` are free)."""
    path = directory / name
    if leave_bytes:
        stat = os.statvfs(directory)
        size = max(0, stat.f_bavail * stat.f_frsize - leave_bytes)
        with path.open("wb") as out:
            out.write(b"\0" * size)
        return path
    chunk = b"\0" * 65536
    with path.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    with path.open("ab", buffering=0) as out, contextlib.suppress(OSError):  # the last partial chunk's room
        while True:
            out.write(b"\0" * 512)
    return path
