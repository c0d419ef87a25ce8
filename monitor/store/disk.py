"""Disk space: a cheap free-space guard, and file writes that never leave a partial file behind.

The engine checks :class:`DiskGuard` before it writes clips, snapshots and live pictures, so media stops
before the disk is full while incidents are still recorded (with ``clip_error: disk_full``) and Redis
keeps room for its append-only file.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

MB = 1024 * 1024
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_tmp_counter = itertools.count()


class DiskFull(OSError):
    """A write failed because the file system (or the user's quota) is full."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error (``OSError``, or a library error carrying an errno) means the disk is full."""
    return isinstance(exc, DiskFull) or getattr(exc, "errno", None) in DISK_FULL_ERRNOS


class DiskGuard:
    """Whether there is at least ``min_free_mb`` of free space where ``path`` lives.

    ``ok()`` is cheap enough for every frame: the file system is asked at most every ``interval_s``.
    Free space is what unprivileged processes may use (``f_bavail``); 1 MB = 1,048,576 bytes.
    ``min_free_mb`` 0 only trips when the disk cannot be queried. Thread-safe.
    """

    def __init__(
        self,
        path: Path | str,
        min_free_mb: float,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.min_free_mb = float(min_free_mb)
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._free_mb: float | None = None
        self._error: str | None = None
        self._reason = ""

    def ok(self) -> bool:
        """Enough free space (as of at most ``interval_s`` ago) to keep writing media."""
        self._refresh()
        return not self._reason

    def free_mb(self) -> float | None:
        """Free space in MB, or None when the file system cannot be queried."""
        self._refresh()
        return self._free_mb

    @property
    def reason(self) -> str:
        """Why writing should stop, "" when it need not: ``disk_full: 3.2 MB free on /data, below …``."""
        self._refresh()
        return self._reason

    @property
    def code(self) -> str | None:
        """``disk_full`` or ``disk_error`` (free space unknown) while not ok, else None."""
        reason = self.reason
        return reason.split(":", 1)[0] if reason else None

    def check(self) -> bool:
        """Query the file system now (ignoring the cache); same answer as ``ok``."""
        with self._lock:
            self._query()
        return not self._reason

    def _refresh(self) -> None:
        with self._lock:
            if self._checked_at is None or self._clock() - self._checked_at >= self.interval_s:
                self._query()

    def _query(self) -> None:  # with self._lock held
        self._checked_at = self._clock()
        before = self._reason
        try:
            st = os.statvfs(_existing(self.path))
        except OSError as exc:
            self._free_mb = None
            self._reason = f"disk_error: cannot query free space on {self.path}: {exc.strerror or exc}"
        else:
            self._free_mb = st.f_bavail * st.f_frsize / MB
            if self._free_mb < self.min_free_mb:
                self._reason = (
                    f"disk_full: {self._free_mb:.1f} MB free on {self.path}, "
                    f"below retention.min_free_mb {self.min_free_mb:g}"
                )
            else:
                self._reason = ""
        if self._reason and not before:
            log.warning("%s: clips, snapshots and live pictures stop until there is room", self._reason)
        elif before and not self._reason:
            log.info("disk space back: %.1f MB free on %s; media writing resumes", self._free_mb or 0.0, self.path)


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (the data directory may not exist yet)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return path


def write_atomically(path: Path | str, data: bytes, fsync: bool = False) -> None:
    """Replace ``path`` with ``data`` all at once: readers see the old file or the new one, never a part.

    Writes a temporary file beside it and renames it over ``path``. On any error the temporary file is
    removed; a full disk or quota raises :class:`DiskFull` (an ``OSError``), other errors as they come.
    ``fsync`` also syncs the data before the rename (survives a power cut; slower).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_tmp_counter)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                if fsync:
                    os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    except OSError as exc:
        if exc.errno in DISK_FULL_ERRNOS:
            raise DiskFull(exc.errno, exc.strerror, str(path)) from exc
        raise
