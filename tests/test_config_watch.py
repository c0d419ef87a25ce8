"""Saving streams.yaml: a valid file is taken, a broken one keeps the running config, a bad camera alone does not."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.config.watch import ConfigWatcher


def save(write_config: Callable[..., Path], data: dict[str, object], bump: int) -> None:
    path = write_config(data)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + bump * 1_000_000_000))  # a later save, whatever the clock


def test_a_camera_with_a_missing_file_does_not_block_the_rest_of_a_reload(
    square_mp4: Path, write_config: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    good = {"url": str(square_mp4)}
    watcher = ConfigWatcher(load_config(write_config({"cameras": {"a": good}})))
    save(write_config, {"cameras": {"a": good, "b": good, "gone": {"url": "/no/such/file.mp4"}}}, 1)
    with caplog.at_level(logging.ERROR):
        new = watcher.poll()
    assert new is not None and set(new.config.cameras) == {"a", "b", "gone"}, "applied: 'gone' will go offline"
    assert "cameras.gone.url" in caplog.text and "not found" in caplog.text


def test_an_invalid_file_keeps_the_running_config(square_mp4: Path, write_config: Callable[..., Path]) -> None:
    watcher = ConfigWatcher(load_config(write_config({"cameras": {"a": {"url": str(square_mp4)}}})))
    save(write_config, {"cameras": {"a": {"url": str(square_mp4), "detect_fps": -1}}}, 1)
    assert watcher.poll() is None
    assert watcher.current.config.cameras["a"].detect_fps > 0
