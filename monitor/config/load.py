"""Loading streams.yaml: YAML with positions, ${ENV} and secrets files, camera defaults, then validation.

Validation is pure (no network, no decoding); checks that touch files live in ``check_files`` so ``monitor check``
can run them while ``monitor run`` stays fast.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from detectors.config import DetectorConfig
from monitor.config.broadcasts import broadcast_file_problems
from monitor.config.models import Config
from monitor.config.problems import (
    ConfigError,
    ConfigProblem,
    _pydantic_problems,
    camera_source_problem,
    cross_reference_problems,
)
from monitor.config.yamlmarks import Mark, Path_, YamlSyntaxError, load_with_marks, nearest_mark


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A validated config plus where it came from (relative paths resolve against ``base_dir``)."""

    config: Config
    path: Path
    marks: dict[Path_, Mark]

    @property
    def base_dir(self) -> Path:
        """Directory of the config file."""
        return self.path.parent

    @property
    def data_dir(self) -> Path:
        """Absolute data directory."""
        return (self.base_dir / self.config.data_dir).resolve()

    def detector_for(self, camera: str) -> DetectorConfig:
        """The global detector settings with this camera's overrides applied."""
        override = self.config.cameras[camera].detector
        if not override:
            return self.config.detector
        return DetectorConfig.model_validate({**self.config.detector.model_dump(), **override})

    def resolve(self, relative: str) -> Path:
        """A path from the config, made absolute relative to the config file."""
        path = Path(relative)
        return path if path.is_absolute() else (self.base_dir / path).resolve()


def load_config(path: str | Path) -> LoadedConfig:
    """Read, parse and validate a config file; raise ConfigError listing every problem."""
    path = Path(path)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem(name, (), f"cannot read config file: {exc.strerror or exc}")]) from None
    try:
        data, marks = load_with_marks(text)
    except YamlSyntaxError as exc:
        raise ConfigError([ConfigProblem(name, (), f"invalid YAML: {exc}", exc.mark)]) from None
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(name, (), "expected a mapping with 'cameras:' at the top level")])
    secrets, problem = _read_secrets(data, path)
    if problem is not None:
        raise ConfigError([ConfigProblem(name, ("secrets_file",), problem, nearest_mark(marks, ("secrets_file",)))])
    missing: list[tuple[Path_, str]] = []
    data = _apply_camera_defaults(_expand_env(data, (), missing, secrets), marks)
    if missing:
        raise ConfigError(
            [
                ConfigProblem(
                    name,
                    loc,
                    f"{var} is set neither in the environment nor in the secrets file",
                    nearest_mark(marks, loc),
                )
                for loc, var in missing
            ]
        )
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(list(_pydantic_problems(exc, data, marks, name))) from None
    problems = [
        ConfigProblem(name, loc, msg, nearest_mark(marks, loc)) for loc, msg in cross_reference_problems(config)
    ]
    if problems:
        raise ConfigError(problems)
    return LoadedConfig(config, path.resolve(), marks)


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(node: Any, path: Path_, missing: list[tuple[Path_, str]], secrets: dict[str, str]) -> Any:
    """Fill ``${VAR}`` in string values from the environment or the secrets file, keeping secrets out of the file.

    Only values are expanded (never comments or keys); unset variables are collected with their path.
    """
    if isinstance(node, dict):
        return {key: _expand_env(value, (*path, key), missing, secrets) for key, value in node.items()}
    if isinstance(node, list):
        return [_expand_env(item, (*path, i), missing, secrets) for i, item in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node
    lookup = {**secrets, **os.environ}
    for var in _ENV.findall(node):
        if var not in lookup:
            missing.append((path, var))
    return _ENV.sub(lambda m: lookup.get(m.group(1), m.group(0)), node)


def _read_secrets(data: dict[str, Any], config_path: Path) -> tuple[dict[str, str], str | None]:
    """``secrets_file:`` (relative to the config): a YAML mapping NAME: value used for ``${NAME}``."""
    name = data.get("secrets_file")
    if name is None:
        return {}, None
    path = Path(str(name))
    path = path if path.is_absolute() else config_path.parent / path
    try:
        loaded = load_with_marks(path.read_text(encoding="utf-8"))[0]
    except OSError as exc:
        return {}, f"cannot read secrets file {path}: {exc.strerror or exc}"
    except YamlSyntaxError as exc:
        return {}, f"secrets file {path} is not valid YAML: {exc}"
    if not isinstance(loaded, dict):
        return {}, f"secrets file {path} must be a mapping NAME: value"
    return {str(k): str(v) for k, v in loaded.items()}, None


def _apply_camera_defaults(data: dict[str, Any], marks: dict[Path_, Mark]) -> dict[str, Any]:
    """``camera_defaults:`` fills keys a camera leaves out (a 200-camera file states them once)."""
    defaults = data.get("camera_defaults")
    cameras = data.get("cameras")
    if not isinstance(defaults, dict) or not isinstance(cameras, dict):
        return data
    merged = {}
    for cam_name, cam in cameras.items():
        if isinstance(cam, dict):
            for key in defaults:
                if key not in cam:  # errors in a default value point at the default
                    marks.setdefault(("cameras", cam_name, key), marks.get(("camera_defaults", key), Mark(1, 1)))
            cam = {**defaults, **cam}
        merged[cam_name] = cam
    return {**data, "cameras": merged}


def check_files(loaded: LoadedConfig, decode: bool = True) -> list[ConfigProblem]:
    """Problems with the files and streams the config points at: missing videos, malformed camera URLs, missing
    or unreadable announcements."""
    from speakers.audio import AnnouncementError, load_announcement

    problems: list[ConfigProblem] = []

    def add(loc: Path_, message: str) -> None:
        problems.append(ConfigProblem(str(loaded.path), loc, message, nearest_mark(loaded.marks, loc)))

    for cam_name, cam in loaded.config.cameras.items():
        urls = (
            {"url": cam.url}
            if cam.inputs is None
            else {"inputs.detect": cam.inputs.detect, "inputs.record": cam.inputs.record}
        )
        for key, url in urls.items():
            problem = camera_source_problem(str(url), loaded.base_dir)
            if problem is not None:
                add(("cameras", cam_name, *key.split(".")), problem)
    for i, rule in enumerate(loaded.config.rules):
        for key in ("announcement", "chime"):
            name = getattr(rule, key)
            if name is None:
                continue
            audio = loaded.resolve(name)
            if not audio.is_file():
                add(("rules", i, key), f"{key} file not found: {audio}")
            elif decode:
                try:
                    load_announcement(audio, 8000)
                except AnnouncementError as exc:
                    add(("rules", i, key), str(exc))
    for loc, message in broadcast_file_problems(loaded.config.broadcasts, loaded.base_dir, decode):
        add(loc, message)
    return problems


def load_or_report(path: str | Path) -> LoadedConfig | None:
    """Load a config for a command: on errors print every problem (one per line, on stderr) and return None."""
    import sys

    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None
