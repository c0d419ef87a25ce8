"""Saving a zone from the web page into streams.yaml: only that zone's characters change, byte for byte.

Every test works on a real file on disk and reads it back with the real loader.
"""

from __future__ import annotations

import difflib
import errno
import os
import stat
from pathlib import Path

import pytest

from monitor.config import ConfigError, load_config
from monitor.config.edit import ZoneEditError, set_zone, with_zone, zone_snippet
from monitor.config.watch import ConfigWatcher
from tests.support.filesystems import fill, small_tmpfs

RICH = """\
# streams.yaml for 村口 (the village entrance): written by hand, keep the comments!
redis_url: null   # embedded Redis

data_dir: './data'
camera_defaults: {detect_fps: 2}

cameras:
  # the gate, seen from the shop
  gate:
    url: "rtsp://10.0.0.5:554/stream1"   # double-quoted on purpose
    detect_fps: 3

    zones:
      "门口":   # the doorway
        points:
          - [0.1, 0.5]
          - [0.6, 0.5]
          - [0.6, 0.95]
        filter: {min_confidence: 0.4}
      广场: {points: [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8]]}  # flow style, a key in Chinese

      # a zone we may add later
  square:
    url: 'rtsp://10.0.0.6/live'   # single-quoted
    speed: 1.0

  # a camera written on one line
  lane: {url: rtsp://10.0.0.7/live, zones: {}}

rules:
  - {kind: gathering, camera: gate, zone: 门口, min_people: 4, dwell_s: 3, clear_s: 3}
"""

TRIANGLE = [(0.25, 0.25), (0.75, 0.25), (0.5, 0.9)]
SQUARE = [(0.1, 0.1), (0.9, 0.1), (0.9, 0.9), (0.1, 0.9)]


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def _changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """(removed, added) lines between two texts."""
    diff = list(difflib.ndiff(before.splitlines(keepends=True), after.splitlines(keepends=True)))
    return [d[2:] for d in diff if d.startswith("- ")], [d[2:] for d in diff if d.startswith("+ ")]


@pytest.fixture
def rich(tmp_path: Path) -> Path:
    return _write(tmp_path / "streams.yaml", RICH)


def test_a_new_zone_is_one_added_line_after_the_cameras_last_zone(rich: Path) -> None:
    loaded = set_zone(rich, "gate", "出口", TRIANGLE)
    after = rich.read_text(encoding="utf-8")
    line = "      出口: {points: [[0.25, 0.25], [0.75, 0.25], [0.5, 0.9]]}\n"
    anchor = "      广场: {points: [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8]]}  # flow style, a key in Chinese\n"
    assert after == RICH.replace(anchor, anchor + line)  # every other byte as it was
    assert _changed_lines(RICH, after) == ([], [line])
    assert zone_snippet("出口", TRIANGLE) == line.strip() + "\n"  # the page shows the line that was written

    zones = load_config(rich).config.cameras["gate"].zones
    assert list(zones) == ["门口", "广场", "出口"]
    assert zones["出口"].points == TRIANGLE
    assert loaded.path == rich.resolve() and loaded.config.cameras["gate"].zones["出口"].points == TRIANGLE


def test_saving_the_same_zone_twice_gives_the_same_file(rich: Path) -> None:
    set_zone(rich, "gate", "出口", TRIANGLE)
    once = rich.read_bytes()
    set_zone(rich, "gate", "出口", TRIANGLE)
    assert rich.read_bytes() == once
    set_zone(rich, "gate", "门口", TRIANGLE)
    twice = rich.read_bytes()
    set_zone(rich, "gate", "门口", TRIANGLE)
    assert rich.read_bytes() == twice


def test_replacing_a_zone_changes_only_its_points_and_keeps_their_style_and_its_filter(rich: Path) -> None:
    set_zone(rich, "gate", "门口", SQUARE)  # block list: stays a block list, at the same indentation
    after = rich.read_text(encoding="utf-8")
    removed, added = _changed_lines(RICH, after)
    assert removed == ["          - [0.1, 0.5]\n", "          - [0.6, 0.5]\n", "          - [0.6, 0.95]\n"]
    assert added == [f"          - [{x:g}, {y:g}]\n" for x, y in SQUARE]
    door = load_config(rich).config.cameras["gate"].zones["门口"]
    assert door.points == SQUARE
    assert door.filter is not None and door.filter.min_confidence == 0.4

    before = after
    set_zone(rich, "gate", "广场", TRIANGLE)  # flow line: only the list inside it changes, the comment stays
    removed, added = _changed_lines(before, rich.read_text(encoding="utf-8"))
    assert removed == ["      广场: {points: [[0.2, 0.2], [0.8, 0.2], [0.8, 0.8]]}  # flow style, a key in Chinese\n"]
    assert added == ["      广场: {points: [[0.25, 0.25], [0.75, 0.25], [0.5, 0.9]]}  # flow style, a key in Chinese\n"]


def test_a_cameras_first_zone_gets_a_zones_block_or_entry_in_the_cameras_own_style(rich: Path) -> None:
    set_zone(rich, "square", "road", TRIANGLE)
    after = rich.read_text(encoding="utf-8")
    speed = "    speed: 1.0\n"
    block = "    zones:\n      road: {points: [[0.25, 0.25], [0.75, 0.25], [0.5, 0.9]]}\n"
    assert after == RICH.replace(speed, speed + block)  # before the blank line and the next camera's comment

    set_zone(rich, "lane", "yes", TRIANGLE)  # `zones: {}`; a name YAML would read as true is quoted
    removed, added = _changed_lines(after, rich.read_text(encoding="utf-8"))
    assert removed == ["  lane: {url: rtsp://10.0.0.7/live, zones: {}}\n"]
    assert added == ['  lane: {url: rtsp://10.0.0.7/live, zones: {"yes": {points: [[0.25, 0.25], [0.75, 0.25], '
                     "[0.5, 0.9]]}}}\n"]  # fmt: skip
    config = load_config(rich).config
    assert config.cameras["square"].zones["road"].points == TRIANGLE
    assert list(config.cameras["lane"].zones) == ["yes"]


ONE = '"1": {points: [[0, 0], [1, 0], [1, 1]]}'


@pytest.mark.parametrize(
    ("camera_text", "expected"),
    [
        ("  a: {url: rtsp://x/1}\n", f"  a: {{url: rtsp://x/1, zones: {{{ONE}}}}}\n"),
        ("  a:\n    url: rtsp://x/1  # note\n\n  # b: later\n",
         f"  a:\n    url: rtsp://x/1  # note\n    zones:\n      {ONE}\n\n  # b: later\n"),
        ("  a:\n      url: rtsp://x/1", f"  a:\n      url: rtsp://x/1\n      zones:\n          {ONE}\n"),
    ],
    ids=["flow-camera", "trailing-comments", "no-final-newline-4-space-indent"],
)  # fmt: skip
def test_layouts_of_a_camera_without_zones(tmp_path: Path, camera_text: str, expected: str) -> None:
    path = _write(tmp_path / "streams.yaml", "cameras:\n" + camera_text)
    set_zone(path, "a", "1", [(0, 0), (1, 0), (1, 1)])
    assert path.read_text(encoding="utf-8") == "cameras:\n" + expected
    assert load_config(path).config.cameras["a"].zones["1"].points == [(0, 0), (1, 0), (1, 1)]


def test_windows_line_endings_stay(tmp_path: Path) -> None:
    crlf = RICH.replace("\n", "\r\n")
    path = _write(tmp_path / "streams.yaml", crlf)
    set_zone(path, "gate", "门口", SQUARE)
    set_zone(path, "square", "road", TRIANGLE)
    after = path.read_bytes().decode("utf-8")
    assert after.count("\n") == after.count("\r\n")
    unix = RICH
    for camera, zone, points in [("gate", "门口", SQUARE), ("square", "road", TRIANGLE)]:
        unix = with_zone(unix, camera, zone, points)
    assert after == unix.replace("\n", "\r\n")


def test_a_refused_save_leaves_the_file_as_it_was(rich: Path) -> None:
    with pytest.raises(ConfigError) as refused:  # the loader's own check: a polygon needs 3 corners
        set_zone(rich, "gate", "出口", [(0.1, 0.1), (0.2, 0.2)])
    assert "at least 3 points" in str(refused.value)
    with pytest.raises(KeyError):
        set_zone(rich, "nowhere", "出口", TRIANGLE)
    with pytest.raises(ZoneEditError, match="may only hold"):
        set_zone(rich, "gate", "a b", TRIANGLE)
    assert rich.read_text(encoding="utf-8") == RICH
    assert sorted(p.name for p in rich.parent.iterdir()) == ["streams.yaml"], "no temporary file is left behind"


def test_layouts_it_cannot_edit_safely_are_refused_not_mangled(tmp_path: Path) -> None:
    shared = """\
cameras:
  a:
    url: rtsp://x/1
    zones: &shared
      z: {points: [[0, 0], [1, 0], [1, 1]]}
  c: {url: rtsp://x/3, zones: *shared}
  b:
    <<: {url: rtsp://x/2, zones: {z: {points: [[0, 0], [1, 0], [1, 1]]}}}
    detect_fps: 1
"""
    path = _write(tmp_path / "streams.yaml", shared)
    with pytest.raises(ZoneEditError, match="alias"):  # c's zones are a's: they are not written at c
        set_zone(path, "c", "new", TRIANGLE)
    with pytest.raises(ZoneEditError, match="more than that zone"):  # a's zones are c's zones too
        set_zone(path, "a", "new", TRIANGLE)
    with pytest.raises(ZoneEditError, match="more than that zone"):  # a zones: key would hide the merged ones
        set_zone(path, "b", "new", TRIANGLE)
    with pytest.raises(ZoneEditError, match="more than that zone"):  # so is changing a's z (c's z too)
        set_zone(path, "a", "z", TRIANGLE)
    assert path.read_text(encoding="utf-8") == shared
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streams.yaml"]


def test_the_write_is_atomic_keeps_permissions_and_follows_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    real = _write(tmp_path / "conf" / "streams.yaml", RICH)
    real.chmod(0o600)  # it may hold camera passwords
    link = tmp_path / "streams.yaml"
    link.symlink_to(real)
    with real.open("rb") as reader:  # a reader that opened the file before the save keeps the old, whole file
        set_zone(link, "gate", "出口", TRIANGLE)
        assert reader.read() == RICH.encode("utf-8")
    assert link.is_symlink() and "出口" in real.read_text(encoding="utf-8")
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert sorted(p.name for p in real.parent.iterdir()) == ["streams.yaml"]


def test_a_full_disk_fails_the_save_and_leaves_the_old_file_whole(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small", "1m") as disk:
        path = _write(disk / "streams.yaml", RICH)
        filler = fill(disk)
        with pytest.raises(OSError) as failed:
            set_zone(path, "gate", "出口", TRIANGLE)
        assert failed.value.errno == errno.ENOSPC
        assert path.read_text(encoding="utf-8") == RICH
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "streams.yaml"]
        filler.unlink()
        set_zone(path, "gate", "出口", TRIANGLE)
        assert "出口" in load_config(path).config.cameras["gate"].zones


def test_a_running_engines_watcher_picks_up_the_saved_zone(rich: Path) -> None:
    os.utime(rich, (1_000_000_000, 1_000_000_000))  # an old file: the save's new time cannot coincide with it
    watcher = ConfigWatcher(load_config(rich))  # what the engine polls for hot reload
    assert watcher.poll() is None
    set_zone(rich, "gate", "出口", TRIANGLE)
    new = watcher.poll()
    assert new is not None and new.config.cameras["gate"].zones["出口"].points == TRIANGLE
