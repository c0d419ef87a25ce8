"""The streams.yaml schema: pydantic models of the root, cameras, zones, inputs and clips.

Each section that a stage owns keeps its model beside that stage's config (detectors, speakers, rules); the
sections of the engine's own services (notify, retention, web) are in this package. Validation is pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from detectors.config import DetectorConfig
from monitor.config.broadcasts import BroadcastConfig
from monitor.config.cluster import ClusterConfig
from monitor.config.notify import NotifierConfig
from monitor.config.retention import RetentionConfig
from monitor.config.talk import TalkConfig
from monitor.config.web import WebConfig
from monitor.ingest.hwaccel import HwaccelMode
from monitor.ingest.sampler import SamplingMode
from monitor.rules.models import RuleConfig, ZoneFilterConfig
from speakers.config import SpeakerConfig

URL_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")

NAME_MAX = 64
# A name is a URL segment and a label on the page: a letter or digit (any script: 门口 is fine), then letters,
# digits, '_', '.', '-'. No '/', backslash, spaces, control characters or '..'. Names never become file paths.
NAME_PATTERN = re.compile(rf"[^\W_][\w.-]{{0,{NAME_MAX - 1}}}")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a camera, zone, speaker or group, or None when it can."""
    if NAME_PATTERN.fullmatch(name) and ".." not in name:
        return None
    if not name:
        return "must not be empty"
    if len(name) > NAME_MAX:
        return f"is longer than {NAME_MAX} characters"
    return "may only hold letters, digits, '_', '.' and '-', start with a letter or digit, and not contain '..'"


def _name_check(what: str) -> Callable[[str], str]:
    """A validator that refuses names unfit for URLs and labels, saying what the name is for."""

    def check(name: str) -> str:
        problem = name_problem(name)
        if problem is not None:
            raise ValueError(f"{what} name {name!r} {problem}")
        return name

    return check


CameraName = Annotated[str, AfterValidator(_name_check("camera"))]
ZoneName = Annotated[str, AfterValidator(_name_check("zone"))]
SpeakerName = Annotated[str, AfterValidator(_name_check("speaker"))]
GroupName = Annotated[str, AfterValidator(_name_check("speaker group"))]


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
        False,
        description=(
            "Reuse the last detections while the (downscaled) picture has not changed; after 5 s of a still "
            "picture only keyframes are decoded, so a change is noticed at the next keyframe (cheap idle cameras)."
        ),
    )
    detect_fps: float = Field(2.0, gt=0, le=30, description="Frames per second sampled for person detection.")
    hwaccel: HwaccelMode = Field(
        "none",
        description=(
            "Decode the detect stream on a hardware device: cuda (NVIDIA NVDEC), qsv (Intel Quick Sync), vaapi, "
            "vulkan, or auto (the first of cuda, qsv, vaapi that works). A device that is missing or cannot decode "
            "the stream leaves the camera decoding on the CPU; its status says why."
        ),
    )
    zones: dict[ZoneName, ZoneConfig] = Field(default_factory=dict, description="Named zones on this camera's image.")
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
    cameras: dict[CameraName, CameraConfig] = Field(description="Cameras by name.")
    speakers: dict[SpeakerName, SpeakerConfig] = Field(default_factory=dict, description="Speakers by name.")
    speaker_groups: dict[GroupName, list[str]] = Field(
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
    cluster: ClusterConfig | None = Field(
        None, description="Share the cameras among several machines through etcd; absent = this machine runs all."
    )
    broadcasts: dict[str, BroadcastConfig] = Field(
        default_factory=dict, description="Scheduled announcements (daily notices) on speakers, by name."
    )
    talk: TalkConfig = Field(default_factory=TalkConfig, description="Live talk-down from the web page.")
