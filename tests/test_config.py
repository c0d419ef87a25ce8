"""streams.yaml validation: every broken config gets an exit code 1 and a message naming the problem."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from monitor.cli import main
from monitor.config import ConfigError, load_config
from monitor.config.models import name_problem


def sample(root: Path) -> dict[str, object]:
    """A valid config in the documented shape, with absolute paths into the repo."""
    return {
        "redis_url": None,
        "data_dir": "./data",
        "cameras": {
            "square_east": {
                "url": str(root / "sample_videos/square.mp4"),
                "detect_fps": 2,
                "zones": {"square": {"points": [[0.1, 0.5], [0.9, 0.5], [0.9, 1.0], [0.1, 1.0]]}},
                "speakers": ["square_horn"],
            }
        },
        "speakers": {
            "square_horn": {"kind": "rtp", "host": "127.0.0.1", "port": 5004, "codec": "pcmu"},
            "center_pc": {"kind": "local", "device": "default"},
        },
        "rules": [
            {
                "kind": "gathering",
                "camera": "square_east",
                "zone": "square",
                "min_people": 4,
                "dwell_s": 5,
                "cooldown_s": 120,
                "announcement": str(root / "announcements/disperse_zh.wav"),
            }
        ],
    }


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check", "-c", str(path)])
    out = capsys.readouterr()
    return code, out.err + out.out


def test_sample_streams_yaml_is_valid(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(root / "streams.yaml", capsys)
    assert code == 0, out
    assert "1 camera(s), 1 input(s), 1 zone(s), 2 speaker(s), 1 rule(s), 0 schedule(s): OK" in out


def test_documented_shape_is_valid(
    root: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = check(write_config(sample(root)), capsys)
    assert code == 0, out


def test_bad_yaml_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "streams.yaml"
    path.write_text("cameras:\n  cam1:\n    url: [unclosed\n    detect_fps: 2\n", encoding="utf-8")
    code, out = check(path, capsys)
    assert code == 1
    assert f"{path}:4:" in out and "invalid YAML" in out


def edit(cfg: dict[str, object], dotted: str, value: object) -> dict[str, object]:
    node: object = cfg
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]  # type: ignore[index]
    if value is DELETE:
        del node[last]  # type: ignore[union-attr, attr-defined]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value  # type: ignore[index]
    return cfg


DELETE = object()

BROKEN = [
    # (change, expected text in the message)
    ("cameras.square_east.speakers", ["loud_horn"], "cameras.square_east.speakers.0: unknown speaker 'loud_horn'"),
    (
        "cameras.square_east.zones.square.points",
        [[0, 0], [1, 1]],
        "cameras.square_east.zones.square.points: a zone polygon needs at least 3 points, got 2",
    ),
    ("cameras.square_east.url", "sample_videos/missing.mp4", "cameras.square_east.url: video file not found:"),
    ("rules.0.announcement", "announcements/nope.wav", "rules.0.announcement: announcement file not found:"),
    ("rules.0.camera", "square_west", "rules.0.camera: unknown camera 'square_west' (did you mean 'square_east'?)"),
    ("rules.0.zone", "plaza", "rules.0.zone: unknown zone on camera 'square_east' 'plaza'"),
    ("rules.0.min_people", 0, "rules.0.min_people: Input should be greater than or equal to 1"),
    ("rules.0.kind", "stampede", "rules.0"),
    ("cameras.square_east.detect_fps", "fast", "cameras.square_east.detect_fps: Input should be a valid number"),
    (
        "cameras.square_east.detect_fsp",
        5,
        "cameras.square_east.detect_fsp: unknown key 'detect_fsp' (did you mean 'detect_fps'?)",
    ),
    ("cameras.square_east.zonez", {}, "cameras.square_east.zonez: unknown key 'zonez' (did you mean 'zones'?)"),
    ("rules.0.dwell", 5, "rules.0.dwell: unknown key 'dwell' (did you mean 'dwell_s'?)"),
    ("speakers.square_horn.port", 70000, "speakers.square_horn.port: Input should be less than or equal to 65535"),
    ("speakers.square_horn.codec", "opus", "speakers.square_horn.codec: Input should be 'pcmu', 'pcma' or 'l16'"),
    ("speakers.square_horn.kind", "bluetooth", "speakers.square_horn"),
    ("cameras.square_east.url", DELETE, "cameras.square_east: a camera needs either url or inputs"),
    (
        "cameras.square_east.inputs",
        {"detect": "rtsp://a/sub", "record": "rtsp://a/main"},
        "cameras.square_east: a camera needs either url or inputs",
    ),
    ("cameras.square_east.inputs", {"detect": "rtsp://a/sub"}, "cameras.square_east.inputs.record: required key"),
    ("cameras.square_east.sampling", "sometimes", "cameras.square_east.sampling: Input should be 'auto'"),
    ("cameras.square_east.hwaccel", "gpu", "cameras.square_east.hwaccel: Input should be 'none', 'auto', 'cuda'"),
    ("rules.0.close_below", 9, "rules.0.close_below: close_below (9) must not exceed min_people"),
]


@pytest.mark.parametrize(("dotted", "value", "expected"), BROKEN, ids=[b[0] + "=" + str(b[1]) for b in BROKEN])
def test_broken_config_is_rejected_with_its_location(
    root: Path,
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    dotted: str,
    value: object,
    expected: str,
) -> None:
    if dotted.endswith((".url", ".announcement")) and isinstance(value, str):
        value = str(root / value)  # missing files, named by absolute path
    path = write_config(edit(sample(root), dotted, value))
    code, out = check(path, capsys)
    assert code == 1, out
    assert expected in out, out
    assert out.startswith(f"{path}:"), "every problem line starts with file:line:col"
    line_no = int(out.split(":")[1])
    shown_path = out.split(": ")[1]
    keys = [part for part in shown_path.split(".") if not part.isdigit()]
    values = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    line = path.read_text().splitlines()[line_no - 1]  # the key, its list item, or the parent of a missing key
    assert any(t in line for t in keys[-2:] + values), f"line {line_no} ({line!r}) is not where {shown_path} is"


def test_every_problem_is_reported_at_once(
    root: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = edit(sample(root), "cameras.square_east.speakers", ["nope"])
    cfg = edit(cfg, "rules.0.camera", "elsewhere")
    code, out = check(write_config(cfg), capsys)
    assert code == 1
    assert "unknown speaker 'nope'" in out and "unknown camera 'elsewhere'" in out


def test_line_and_column_point_at_the_key(root: Path, write_config: Callable[..., Path]) -> None:
    path = write_config(edit(sample(root), "cameras.square_east.speakers", ["nope"]))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problem = info.value.problems[0]
    line = path.read_text().splitlines()[problem.mark.line - 1] if problem.mark else ""
    assert "nope" in line


def test_environment_secrets_are_filled(
    root: Path, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = edit(sample(root), "cameras.square_east.url", "rtsp://admin:${CAM_PASSWORD}@127.0.0.1/stream")
    monkeypatch.setenv("CAM_PASSWORD", "s3cret")
    assert load_config(write_config(cfg)).config.cameras["square_east"].url.endswith(":s3cret@127.0.0.1/stream")
    monkeypatch.delenv("CAM_PASSWORD")
    with pytest.raises(
        ConfigError,
        match=r"cameras\.square_east\.url: CAM_PASSWORD is set neither in the environment nor in the secrets file",
    ):
        load_config(write_config(cfg))


def test_corrupt_announcement_is_reported(
    root: Path, tmp_path: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    code, out = check(write_config(edit(sample(root), "rules.0.announcement", str(bad))), capsys)
    assert code == 1 and "rules.0.announcement" in out and "broken.wav" in out


def test_console_script_exit_code(root: Path, write_config: Callable[..., Path]) -> None:
    path = write_config(edit(sample(root), "cameras.square_east.zones.square.points", [[0, 0], [1, 1]]))
    proc = subprocess.run([sys.executable, "-m", "monitor", "check", "-c", str(path)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "cameras.square_east.zones.square.points" in proc.stderr


def test_speaker_groups_are_checked(
    root: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = sample(root)
    cfg["speaker_groups"] = {
        "village": ["square_horn", "center_pc"],
        "all": ["village", "ghost"],
        "loop_a": ["loop_b"],
        "loop_b": ["loop_a"],
    }
    cfg = edit(cfg, "cameras.square_east.speakers", ["village"])
    code, out = check(write_config(cfg), capsys)
    assert code == 1
    assert "speaker_groups.all:" in out and "ghost" in out
    assert "speaker_groups.loop_a:" in out and "cycle" in out
    assert "cameras.square_east.speakers" not in out, "a camera may name a group"


def test_camera_may_use_a_group(root: Path, write_config: Callable[..., Path]) -> None:
    cfg = edit(sample(root), "cameras.square_east.speakers", ["village"])
    cfg["speaker_groups"] = {"village": ["square_horn", "center_pc"]}
    assert load_config(write_config(cfg)).config.speaker_groups == {"village": ["square_horn", "center_pc"]}


def test_placeholders_in_comments_are_ignored(root: Path, tmp_path: Path) -> None:
    text = (root / "streams.yaml").read_text() + "\n# password: ${NOT_SET_ANYWHERE}\n"
    path = tmp_path / "streams.yaml"
    path.write_text(text.replace("sample_videos/", f"{root}/sample_videos/"))
    assert "square_east" in load_config(path).config.cameras


def test_secrets_file_fills_placeholders_and_never_shows_them(
    root: Path, tmp_path: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "secrets.yaml").write_text("CAM_PASSWORD: hunter2\n")
    cfg = edit(sample(root), "cameras.square_east.url", "rtsp://admin:${CAM_PASSWORD}@127.0.0.1/stream")
    cfg["secrets_file"] = "secrets.yaml"
    loaded = load_config(write_config(cfg))
    assert loaded.config.cameras["square_east"].url == "rtsp://admin:hunter2@127.0.0.1/stream"
    cfg["secrets_file"] = "missing.yaml"
    code, out = check(write_config(cfg), capsys)
    assert code == 1 and "secrets_file: cannot read secrets file" in out and "hunter2" not in out


def test_camera_defaults_apply_unless_a_camera_sets_the_key(
    root: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = sample(root)
    cfg["camera_defaults"] = {"detect_fps": 1, "speakers": ["square_horn"], "offline_after_s": 30}
    cfg["cameras"]["second"] = {"url": str(root / "sample_videos/square.mp4"), "detect_fps": 4}  # type: ignore[index]
    loaded = load_config(write_config(cfg))
    first, second = loaded.config.cameras["square_east"], loaded.config.cameras["second"]
    assert (first.detect_fps, first.offline_after_s) == (2, 30), "a camera's own value wins"
    assert (second.detect_fps, second.speakers) == (4, ["square_horn"])
    cfg["camera_defaults"] = {"offline_after_s": "often"}
    code, out = check(write_config(cfg), capsys)
    assert code == 1 and "offline_after_s: Input should be a valid number" in out


def _problem_line(out: str, path: Path, dotted: str) -> str:
    """The YAML line a ``file:line:col: dotted: message`` problem points at (asserting that form)."""
    [problem] = [line for line in out.splitlines() if f": {dotted}: " in line]
    assert problem.startswith(f"{path}:"), problem
    return path.read_text().splitlines()[int(problem.split(":")[1]) - 1]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("rtsp://admin:Zq/9x@10.0.0.5:554/stream1", "has a user name or password with '/', '?' or '#' in it"),
        ("rtsp://admin:Zq?9x@10.0.0.5:554/stream1", "percent-encode them (%2F, %3F, %23)"),
        ("rtsp://admin:Zq#9x@10.0.0.5:554/stream1", "percent-encode them (%2F, %3F, %23)"),
        ("rtsp://admin:Zq 9x@10.0.0.5:554/stream1", "contains a space: percent-encode it (%20)"),
        ("rtsp://10.0.0.5:99999/stream1?pwd=Zq9x", "has a port that is not a number from 1 to 65535"),
        ("rtsp://admin:Zq9x/stream1", "has a port that is not a number"),  # '@host' forgotten
        ("rtsp:///stream1?token=Zq9x", "has no host"),
    ],
)
def test_malformed_camera_url_is_a_problem_at_its_line_without_the_password(
    root: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str], url: str, message: str
) -> None:
    cfg = sample(root)
    cfg["cameras"]["gate"] = {"url": url}  # type: ignore[index]
    path = write_config(cfg)
    code, out = check(path, capsys)
    assert code == 1, out
    assert ": cameras.gate.url: stream URL rtsp://" in out and message in out, out
    assert "Zq" not in out and "9x" not in out, out
    assert "url:" in _problem_line(out, path, "cameras.gate.url")


def test_missing_or_misspelt_camera_inputs_name_camera_key_and_line(
    root: Path, tmp_path: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = sample(root)
    cfg["cameras"]["gate"] = {"inputs": {"detect": "rtsp:/10.0.0.5/sub", "record": str(tmp_path / "gone.mp4")}}  # type: ignore[index]
    path = write_config(cfg)
    code, out = check(path, capsys)
    assert code == 1, out
    assert "cameras.gate.inputs.detect: video file not found:" in out and "starts with scheme://" in out, out
    assert f"cameras.gate.inputs.record: video file not found: {tmp_path / 'gone.mp4'}" in out, out
    assert "detect:" in _problem_line(out, path, "cameras.gate.inputs.detect")
    assert "record:" in _problem_line(out, path, "cameras.gate.inputs.record")
    assert "square_east" not in out, "the good camera has no problem"


def test_percent_encoded_and_at_sign_passwords_are_fine(
    root: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = sample(root)
    cfg["cameras"]["gate"] = {"url": "rtsp://admin:p%2Fa%3Fs%23s@10.0.0.5:554/Streaming/Channels/101"}  # type: ignore[index]
    cfg["cameras"]["yard"] = {"url": "rtsp://admin:p@ss@[fe80::1]:554/live?channel=1&subtype=0"}  # type: ignore[index]
    code, out = check(write_config(cfg), capsys)
    assert code == 0, out


def test_a_refused_speaker_url_is_reported_without_its_password(write_config: Callable[..., Path]) -> None:
    path = write_config({"cameras": {}, "speakers": {"porch": {"kind": "http", "url": "ftp://root:hunter22@10.0.0.6"}}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "speakers.porch" in str(err.value) and "hunter22" not in str(err.value)


XSS_NAME = '<img src=x onerror="alert(1)">/cam'


def test_names_unfit_for_urls_and_paths_are_refused_with_their_location(
    root: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = sample(root)
    cameras = cast("dict[str, dict[str, Any]]", cfg["cameras"])
    cam = cameras["square_east"]
    cam["zones"] = {**cam["zones"], "a/b": cam["zones"]["square"], "..": cam["zones"]["square"]}
    cameras[XSS_NAME] = {"url": "rtsp://10.0.0.1/x"}
    cfg["speakers"] = {**cast("dict[str, Any]", cfg["speakers"]), "horn one": {"kind": "local"}}
    cfg["speaker_groups"] = {"back\\slash": ["center_pc"], "tab\tbed": ["center_pc"]}
    path = write_config(cfg)
    code, out = check(path, capsys)
    assert code == 1, out
    lines = path.read_text(encoding="utf-8").splitlines()
    expected = {
        f"cameras.{XSS_NAME}": "camera name",
        "cameras.square_east.zones.a/b": "zone name 'a/b'",
        "cameras.square_east.zones...": "zone name '..'",
        "speakers.horn one": "speaker name 'horn one'",
        "speaker_groups.back\\slash": "speaker group name",
        "speaker_groups.tab\tbed": "speaker group name",
    }
    problems = out.strip().splitlines()
    assert len(problems) == len(expected), out
    for dotted, message in expected.items():
        line = next(p for p in problems if f": {dotted}: {message}" in p)
        assert line.startswith(f"{path}:"), line
        line_no, col = (int(n) for n in line.removeprefix(f"{path}:").split(":")[:2])
        key = dotted.rsplit(".", 1)[-1] if not dotted.endswith("...") else ".."
        assert lines[line_no - 1][col - 1 :].lstrip("'\"").startswith(key[:3]), (line, lines[line_no - 1])
    assert "may only hold letters, digits" in out


@pytest.mark.parametrize("name", ["门口", "广场_东", "cam-01.main", "Ünter", "a"])
def test_unicode_letters_digits_and_slug_punctuation_make_valid_names(
    root: Path, write_config: Callable[..., Path], name: str
) -> None:
    cfg = sample(root)
    cameras = cast("dict[str, dict[str, Any]]", cfg["cameras"])
    cameras[name] = {"url": "rtsp://10.0.0.1/x", "zones": {name: {"points": [[0, 0], [1, 0], [1, 1]]}}}
    rule = {"kind": "gathering", "camera": name, "zone": name, "min_people": 3}
    cfg["rules"] = [*cast("list[Any]", cfg["rules"]), rule]
    loaded = load_config(write_config(cfg))
    assert name in loaded.config.cameras and name in loaded.config.cameras[name].zones


@pytest.mark.parametrize(
    "name", ["", "a/b", "a b", "..", "a..b", ".hidden", "-x", "_x", "a\\b", "a\x00b", "a\nb", "x" * 65, "a:b", "a%2Fb"]
)
def test_name_problem_refuses_separators_dots_and_controls(name: str) -> None:
    assert name_problem(name) is not None
