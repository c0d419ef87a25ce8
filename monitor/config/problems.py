"""What is wrong with a config, located as file:line:col plus the key path, and cross-reference checks."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from monitor.config.models import Config, file_path
from monitor.config.yamlmarks import Mark, Path_, nearest_mark
from monitor.redact import redact_url, scrub, url_problem
from monitor.rules.models import GatheringRuleConfig


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a config file, located as precisely as the file allows."""

    file: str
    path: Path_
    message: str
    mark: Mark | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.mark.line}:{self.mark.col}" if self.mark else self.file
        dotted = ".".join(str(p) for p in self.path)
        message = scrub(self.message)  # validators quote the value they refused: it may be a URL with a password
        return f"{where}: {dotted}: {message}" if dotted else f"{where}: {message}"


class ConfigError(Exception):
    """streams.yaml is invalid; ``problems`` lists every problem found, each with its location."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _pydantic_problems(exc: ValidationError, data: Any, marks: dict[Path_, Mark], name: str) -> Iterator[ConfigProblem]:
    for err in exc.errors():
        loc = _data_path(data, err["loc"])
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            hint = difflib.get_close_matches(key, _keys_at(err["loc"]) or _known_keys(), n=1)
            message = f"unknown key '{key}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
        elif err["type"] == "missing":
            message = "required key is missing"
        else:
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] not in ("value_error", "assertion_error") and "input" in err:
                message += f" (got {err['input']!r})"
        yield ConfigProblem(name, loc, message, nearest_mark(marks, loc))


def _data_path(data: Any, loc: tuple[int | str, ...]) -> Path_:
    """Map a pydantic error location onto the YAML path, dropping union tags it inserts."""
    path: list[str | int] = []
    node = data
    for item in loc:
        if item == "[key]":
            continue  # a refused dict key (e.g. a camera's name): the key's own position is where to look
        in_dict = isinstance(node, dict) and item in node
        in_list = isinstance(node, list) and isinstance(item, int) and item < len(node)
        if in_dict or in_list:
            node = node[item]
        elif isinstance(node, dict | list):
            if not isinstance(item, str) or item in _union_tags():
                continue
            node = None  # a missing key: report it under its parent
        else:
            continue  # inside a scalar (e.g. tuple index of a point): the scalar's position is precise enough
        path.append(item)
    return tuple(path)


def _models() -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []
    todo: list[type[BaseModel]] = [Config]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.append(model)
        for field in model.model_fields.values():
            for arg in _walk_types(field.annotation):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    todo.append(arg)
    return seen


def _walk_types(tp: Any) -> Iterator[Any]:
    yield tp
    for arg in getattr(tp, "__args__", ()) or ():
        yield from _walk_types(arg)
    for arg in getattr(tp, "__metadata__", ()) or ():
        yield from _walk_types(arg)


def _concrete(tp: Any) -> Iterator[Any]:
    """The plain types inside Annotated[...] and unions."""
    if get_origin(tp) is Annotated:
        yield from _concrete(get_args(tp)[0])
    elif get_origin(tp) in (Union, UnionType):
        for arg in get_args(tp):
            yield from _concrete(arg)
    else:
        yield tp


def _keys_at(loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed where pydantic's ``loc`` points (its last element is the unknown key)."""
    types: list[Any] = [Config]
    for item in loc[:-1]:
        following: list[Any] = []
        for tp in (t for candidate in types for t in _concrete(candidate)):
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                if isinstance(item, str) and item in tp.model_fields:
                    following.append(tp.model_fields[item].annotation)
                elif "kind" in tp.model_fields and item in get_args(tp.model_fields["kind"].annotation):
                    following.append(tp)  # a discriminated union's tag
            elif get_origin(tp) in (dict, list):
                following.append(get_args(tp)[-1])  # item or value type
        types = following
    models = [t for c in types for t in _concrete(c) if isinstance(t, type) and issubclass(t, BaseModel)]
    return sorted({key for model in models for key in model.model_fields})


def _known_keys() -> list[str]:
    return sorted({key for model in _models() for key in model.model_fields})


def _union_tags() -> set[str]:
    tags: set[str] = set()
    for model in _models():
        kind = model.model_fields.get("kind")
        if kind is not None:
            tags.update(getattr(kind.annotation, "__args__", ()))
    return tags


def cross_reference_problems(config: Config) -> Iterator[tuple[Path_, str]]:
    """Names that point at nothing: unknown cameras, zones, speakers and groups; group cycles."""
    from speakers.groups import SpeakerGroupError, expand_speakers

    targets = {**config.speakers, **config.speaker_groups}
    for group in config.speaker_groups:
        try:
            expand_speakers([group], config.speaker_groups, config.speakers)
        except SpeakerGroupError as exc:
            yield ("speaker_groups", group), str(exc)
    for cam_name, cam in config.cameras.items():
        for i, spk in enumerate(cam.speakers):
            if spk not in targets:
                yield ("cameras", cam_name, "speakers", i), _unknown("speaker", spk, targets)
    for i, rule in enumerate(config.rules):
        rule_cam = config.cameras.get(rule.camera)
        if rule_cam is None:
            yield ("rules", i, "camera"), _unknown("camera", rule.camera, config.cameras)
            continue
        if rule.zone is not None and rule.zone not in rule_cam.zones:
            yield ("rules", i, "zone"), _unknown(f"zone on camera '{rule.camera}'", rule.zone, rule_cam.zones)
        for j, spk in enumerate(rule.speakers or []):
            if spk not in targets:
                yield ("rules", i, "speakers", j), _unknown("speaker", spk, targets)
        if isinstance(rule, GatheringRuleConfig) and rule.close_level > rule.min_people:
            yield ("rules", i, "close_below"), f"close_below ({rule.close_level}) must not exceed min_people"
    for name, broadcast in config.broadcasts.items():
        for i, spk in enumerate(broadcast.speakers):
            if spk not in targets:
                yield ("broadcasts", name, "speakers", i), _unknown("speaker", spk, targets)


def _unknown(what: str, name: str, known: dict[str, Any]) -> str:
    hint = difflib.get_close_matches(name, list(known), n=1)
    listing = ", ".join(sorted(known)) or "none defined"
    return f"unknown {what} '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint else f" (known: {listing})")


_SCHEME_TYPO = re.compile(r"^(?:rtsps?|https?|rtmps?|srt|udp):/?[^/]", re.IGNORECASE)  # 'rtsp:/cam/x'


def camera_source_problem(url: str, base_dir: Path) -> str | None:
    """Why a camera's ``url`` cannot work: a missing video file, a malformed stream URL (never its password)."""
    source = file_path(url, base_dir)
    if source is None:
        problem = url_problem(url)
        return None if problem is None else f"stream URL {redact_url(url)} {problem}"
    if source.is_file():
        return None
    hint = " (a stream URL starts with scheme://, e.g. rtsp://)" if _SCHEME_TYPO.match(url) else ""
    return f"video file not found: {source}{hint}"
