"""The YAML loader behind streams.yaml: positions for errors, times as text, templates by merge keys."""

from __future__ import annotations

import pytest

from monitor.config.yamlmarks import Mark, YamlSyntaxError, load_with_marks, nearest_mark


def test_times_stay_text_and_numbers_stay_numbers() -> None:
    data, _ = load_with_marks("start: 22:00\nend: 06:30\nport: 5004\ngain: -1.5\nflag: yes\n")
    assert data == {"start": "22:00", "end": "06:30", "port": 5004, "gain": -1.5, "flag": True}


def test_positions_of_keys_and_items() -> None:
    _, marks = load_with_marks("cameras:\n  gate:\n    speakers: [a, b]\n")
    assert marks[("cameras", "gate")] == Mark(2, 3)
    assert marks[("cameras", "gate", "speakers", 1)] == Mark(3, 19)
    assert nearest_mark(marks, ("cameras", "gate", "zones", "x")) == Mark(2, 3)


def test_merge_keys_make_camera_templates() -> None:
    text = (
        "base: &cam {detect_fps: 2, speakers: [horn]}\n"
        "cameras:\n  a: {<<: *cam, url: x}\n  b: {<<: *cam, detect_fps: 1}\n"
    )
    data, _ = load_with_marks(text)
    assert data["cameras"]["a"] == {"detect_fps": 2, "speakers": ["horn"], "url": "x"}
    assert data["cameras"]["b"]["detect_fps"] == 1


def test_syntax_error_has_a_position() -> None:
    with pytest.raises(YamlSyntaxError) as info:
        load_with_marks("a: [1,\nb: 2\n")
    assert info.value.mark == Mark(3, 1)  # where the parser gave up: the end of the file
