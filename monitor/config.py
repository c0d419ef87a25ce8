"""streams.yaml: typed models, loading with file:line:col errors, and cross-reference checks.

Validation here is pure (no network, no decoding); checks that touch files live in
``check_files`` so ``monitor check`` can run them while ``monitor run`` stays fast.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Optional, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo

from detectors.config import DetectorConfig
from monitor.actions.notify_config import NotifierConfig
from monitor.ingest.sampler import SamplingMode
from monitor.redact import redact_url, url_problem
from monitor.rules.models import GatheringRuleConfig, RuleConfig, ZoneFilterConfig
from monitor.store.retention import RetentionConfig
from monitor.web.config import WebConfig
from monitor.yamlmarks import Mark, Path_, YamlSyntaxError, load_with_marks, nearest_mark
from speakers.config import SpeakerConfig

URL_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ZoneConfig(_Model):
    """A polygon on the camera image; people count when their feet are inside it."""

    points: list[tuple[float, float]] = Field(
        description="Polygon corners, relative (0..1, all values) or in pixels of the camera image.",
    )
    filter: ZoneFilterConfig | None = Field(
        None, description="Ignore small or unsure detections, and masks (posters, statues, reflections)."
    )

    @field_validator("points")
    @classmethod
    def _polygon(cls, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if len(points) < 3:
            raise ValueError(f"a zone polygon needs at least 3 points, got {len(points)}")
        if any(x < 0 or y < 0 for x, y in points):
            raise ValueError("polygon coordinates must not be negative")
        return points

    @property
    def relative(self) -> bool:
        """True when every coordinate is within 0..1 (fractions of the image size)."""
        return all(x <= 1.0 and y <= 1.0 for x, y in self.points)


def _optional_fields(model: type[BaseModel], name: str) -> type[BaseModel]:
    """The same model with every field optional (same constraints): a partial override of it."""
    fields: dict[str, Any] = {
        key: (Optional[field.annotation], FieldInfo.merge_field_infos(field, default=None))  # noqa: UP045
        for key, field in model.model_fields.items()
    }
    return create_model(name, __config__=ConfigDict(extra="forbid", frozen=True), **fields)


DetectorOverride = _optional_fields(DetectorConfig, "DetectorOverride")


def file_path(url: str, base_dir: Path) -> Path | None:
    """The video file a source URL names (relative to the config), or None for a network stream."""
    if URL_SCHEME.match(url) and not url.startswith("file://"):
        return None
    path = Path(url.removeprefix("file://"))
    return path if path.is_absolute() else base_dir / path


class InputsConfig(_Model):
    """Two streams of one camera, as real deployments have: a small one to detect on, a full one to record."""

    detect: str = Field(description="Low-resolution substream for detection (rtsp:// or file).")
    record: str = Field(description="Full-resolution stream whose packets make the incident clips.")


class CameraConfig(_Model):
    """One camera: where its video comes from, its zones and the speakers near it."""

    url: str | None = Field(
        None, description="rtsp:// URL, or a video file (relative to streams.yaml) that loops like a camera."
    )
    inputs: InputsConfig | None = Field(None, description="Separate detect and record streams (instead of url).")
    sampling: SamplingMode = Field(
        "auto", description="auto: decode keyframes only when they come often enough for detect_fps; or keyframes|all."
    )
    motion_gate: bool = Field(
        False, description="Reuse the last detections while the (downscaled) picture has not changed."
    )
    detect_fps: float = Field(2.0, gt=0, le=30, description="Frames per second sampled for person detection.")
    zones: dict[str, ZoneConfig] = Field(default_factory=dict, description="Named zones on this camera's image.")
    speakers: list[str] = Field(default_factory=list, description="Speakers that announcements for this camera use.")
    speed: float = Field(1.0, gt=0, le=64, description="Playback speed of a file source (1 = real time).")
    loop: bool = Field(True, description="A file source starts again at its end, like a camera that never stops.")
    open_timeout_s: float = Field(5.0, gt=0, description="Seconds to wait when connecting to the stream.")
    read_timeout_s: float = Field(5.0, gt=0, description="Seconds without data before the stream counts as stalled.")
    reconnect_max_s: float = Field(8.0, gt=0, description="Longest wait between reconnect attempts (backoff cap).")
    detector: dict[str, Any] = Field(
        default_factory=dict,
        description="Per-camera detector settings over the global ones, e.g. {imgsz: 1280} for a wide, far view.",
    )
    offline_after_s: float = Field(
        10.0, gt=0, description="No frames for this long opens a camera_offline incident (closed when frames flow)."
    )

    @field_validator("detector")
    @classmethod
    def _detector_override(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            DetectorOverride.model_validate(value)
        except ValidationError as exc:
            details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(details) from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> CameraConfig:
        if (self.url is None) == (self.inputs is None):
            raise ValueError("a camera needs either url or inputs: {detect: URL, record: URL}")
        return self

    @property
    def detect_url(self) -> str:
        """The stream detection runs on."""
        return self.inputs.detect if self.inputs else str(self.url)

    @property
    def record_url(self) -> str:
        """The stream clips are cut from (the same one when the camera has a single input)."""
        return self.inputs.record if self.inputs else str(self.url)


class ClipConfig(_Model):
    """Incident clips, remuxed from the camera's own encoded packets (no re-encoding)."""

    pre_roll_s: float = Field(8.0, ge=5, le=120, description="Seconds of video kept before the rule fired.")
    post_roll_s: float = Field(8.0, ge=0, le=300, description="Seconds recorded after the rule fired.")


class Config(_Model):
    """The whole streams.yaml."""

    redis_url: str | None = Field(None, description="External Redis; null = embedded Redis in data_dir.")
    secrets_file: str | None = Field(
        None, description="YAML file NAME: value (relative to this file) for ${NAME} placeholders; keep it private."
    )
    camera_defaults: dict[str, Any] = Field(
        default_factory=dict, description="Keys every camera gets unless it sets them itself (e.g. detect_fps)."
    )
    data_dir: str = Field("./data", description="Clips, snapshots and the embedded Redis (relative to this file).")
    detector: DetectorConfig = Field(default_factory=DetectorConfig, description="Person detector settings.")
    clips: ClipConfig = Field(default_factory=ClipConfig, description="Incident clip settings.")
    status_interval_s: float = Field(5.0, gt=0, description="Seconds between console status lines.")
    cameras: dict[str, CameraConfig] = Field(description="Cameras by name.")
    speakers: dict[str, SpeakerConfig] = Field(default_factory=dict, description="Speakers by name.")
    speaker_groups: dict[str, list[str]] = Field(
        default_factory=dict, description="Named groups of speakers (or groups) that play together."
    )
    speaker_health_interval_s: float = Field(60.0, gt=0, description="Seconds between speaker health checks.")
    rules: list[RuleConfig] = Field(default_factory=list, description="Rules that turn observations into incidents.")
    web: WebConfig = Field(default_factory=WebConfig, description="The monitoring center's web page.")
    notify: list[NotifierConfig] = Field(
        default_factory=list, description="Where incident open/close messages go (webhook, DingTalk, WeCom)."
    )
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig, description="When clips and snapshots are deleted (records are kept)."
    )


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
        return f"{where}: {dotted}: {self.message}" if dotted else f"{where}: {self.message}"


class ConfigError(Exception):
    """streams.yaml is invalid; ``problems`` lists every problem found, each with its location."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


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
