"""The low-disk guard and atomic writes, on a real small tmpfs that really fills up."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.config.retention import RetentionConfig
from monitor.store.disk import DiskFull, DiskGuard, is_disk_full, write_atomically
from tests.support.filesystems import fill, small_tmpfs


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs (mounted for the test), empty."""
    with small_tmpfs(tmp_path / "mnt") as path:
        yield path


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_guard_reports_free_space_and_reason(tmp_path: Path) -> None:
    roomy = DiskGuard(tmp_path / "data", min_free_mb=0)  # not created yet: its parent's disk is asked
    assert roomy.ok() and roomy.reason == "" and roomy.code is None
    free = roomy.free_mb()
    assert free is not None and free > 0
    greedy = DiskGuard(tmp_path, min_free_mb=free * 1000)
    assert not greedy.ok() and greedy.code == "disk_full"
    assert greedy.reason.startswith("disk_full: ") and f"MB free on {tmp_path}, below retention.min_free_mb" in (
        greedy.reason
    )


def test_guard_on_a_filling_disk_checks_at_most_once_per_interval(
    full_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    guard = DiskGuard(full_disk, min_free_mb=2, interval_s=1.0, clock=clock)
    assert guard.ok() and (guard.free_mb() or 0) > 3
    filler = fill(full_disk)
    assert guard.ok(), "cached for a second: cheap enough for every frame"
    clock.now += 1.0
    with caplog.at_level(logging.INFO, logger="monitor.store.disk"):
        assert not guard.ok()
        assert guard.free_mb() == 0.0
        assert guard.reason == f"disk_full: 0.0 MB free on {full_disk}, below retention.min_free_mb 2"
        assert not guard.ok() and sum("disk_full" in r.message for r in caplog.records) == 1, "logged once"
        filler.unlink()
        assert not guard.ok()
        assert guard.check(), "check() asks the disk now"
        assert "disk space back" in caplog.records[-1].message


def test_guard_that_cannot_query_the_disk_is_not_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: object) -> os.statvfs_result:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "statvfs", broken)
    guard = DiskGuard(tmp_path, min_free_mb=0)
    assert not guard.ok() and guard.free_mb() is None and guard.code == "disk_error"
    assert "Input/output error" in guard.reason


def test_min_free_mb_is_configurable_with_a_default() -> None:
    assert RetentionConfig().min_free_mb == 500
    assert RetentionConfig(min_free_mb=0).min_free_mb == 0
    with pytest.raises(ValueError):
        RetentionConfig(min_free_mb=-1)
    schema = RetentionConfig.model_json_schema()["properties"]["min_free_mb"]
    assert "disk_full" in schema["description"]


def test_write_atomically_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "live-cam.jpg"
    write_atomically(target, b"first")
    write_atomically(target, b"second")
    assert target.read_bytes() == b"second"
    assert os.listdir(tmp_path) == ["live-cam.jpg"]
    write_atomically(str(target), b"third", fsync=True)
    assert target.read_bytes() == b"third"


def test_write_atomically_on_a_full_disk_leaves_no_partial_file(full_disk: Path) -> None:
    old = full_disk / "live-cam.jpg"
    write_atomically(old, b"old picture")
    fill(full_disk)
    before = sorted(os.listdir(full_disk))
    big = os.urandom(256 * 1024)
    with pytest.raises(DiskFull) as caught:
        write_atomically(old, big)
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(old) and is_disk_full(caught.value)
    assert old.read_bytes() == b"old picture", "the previous file is intact"
    with pytest.raises(DiskFull):
        write_atomically(full_disk / "snapshot.jpg", big)
    assert sorted(os.listdir(full_disk)) == before, "no temporary or partial file left behind"


def test_write_atomically_other_errors_pass_through(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        write_atomically(tmp_path / "missing" / "x.jpg", b"data")
    assert not isinstance(caught.value, DiskFull) and not is_disk_full(caught.value)
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
