"""Clips by remux from the sample video's real packets: a full disk leaves no partial file."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from monitor.ingest.clips import write_clip
from tests.support.clips import packets
from tests.support.filesystems import fill, small_tmpfs


def test_a_clip_is_remuxed_without_reencoding(tmp_path: Path, square_mp4: Path) -> None:
    stream, buffered, container = packets(square_mp4, 4.0)
    with container:
        result = write_clip(tmp_path / "clip.mp4", stream, buffered)
    assert result.path is not None and result.error is None
    with av.open(str(result.path)) as clip:
        assert sum(1 for _ in clip.decode(video=0)) == len(buffered)


def test_a_full_disk_fails_the_clip_and_leaves_no_partial_file(tmp_path: Path, square_mp4: Path) -> None:
    stream, buffered, container = packets(square_mp4, 20.0)
    with small_tmpfs(tmp_path / "small", size="2m") as disk, container:
        fill(disk, leave_bytes=64 * 1024)
        with pytest.raises((OSError, av.FFmpegError)):
            write_clip(disk / "clips" / "x.mp4", stream, buffered)
        assert not list((disk / "clips").iterdir()), "neither the clip nor its .part is left"
