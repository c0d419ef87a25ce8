"""Speakers as the config names them and Redis last saw them: targets without secrets, cameras, groups, state.

Kept apart from ``views`` (which imports it for the dashboard's speaker warning) and from the HTTP layer
(``speaker_api``): plain functions from config and Redis to plain data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import redis

from monitor.config import LoadedConfig
from monitor.redact import redact_url
from monitor.store.incidents import IncidentStore, SpeakerRecords
from speakers.config import (
    HttpSpeakerConfig,
    LocalSpeakerConfig,
    OnvifSpeakerConfig,
    RtpSpeakerConfig,
    SipSpeakerConfig,
    SpeakerConfig,
)
from speakers.groups import SpeakerGroupError, expand_speakers

HealthStateName = Literal["ok", "failed", "unverifiable", "unknown"]


@dataclass(frozen=True, slots=True)
class SpeakerInfo:
    """One configured speaker: what it is, where it plays, who uses it, and what Redis holds about it."""

    name: str
    kind: str
    target: str
    groups: tuple[str, ...]
    cameras: tuple[str, ...]
    records: SpeakerRecords


def target(config: SpeakerConfig) -> str:
    """Where a speaker plays, for display: URLs redacted, never a user name or password field."""
    if isinstance(config, RtpSpeakerConfig):
        return f"{config.codec} → {config.host}:{config.port}"
    if isinstance(config, SipSpeakerConfig):
        return redact_url(config.uri)
    if isinstance(config, HttpSpeakerConfig):
        return f"{redact_url(config.url)} ({config.mode})"
    if isinstance(config, OnvifSpeakerConfig):
        return redact_url(config.url)
    if isinstance(config, LocalSpeakerConfig):
        return f"device {config.device}"
    raise TypeError(f"unknown speaker config {type(config).__name__}")


def _expanded(names: Sequence[str], groups: Mapping[str, Sequence[str]]) -> list[str]:
    try:
        return expand_speakers(names, groups)
    except SpeakerGroupError:  # a loaded config has none; never fail a page over it
        return []


def camera_speakers(config: LoadedConfig) -> dict[str, list[str]]:
    """Camera -> the speakers its announcements can play on (its own and its rules' speakers, groups expanded)."""
    cfg = config.config
    out: dict[str, list[str]] = {}
    for name, cam in cfg.cameras.items():
        names = list(cam.speakers)
        names += [s for rule in cfg.rules if rule.camera == name for s in rule.speakers or []]
        out[name] = _expanded(names, cfg.speaker_groups)
    return out


def speaker_groups(config: LoadedConfig) -> dict[str, list[str]]:
    """Speaker -> the groups that (directly or through other groups) contain it."""
    groups = config.config.speaker_groups
    out: dict[str, list[str]] = {}
    for group in groups:
        for speaker in _expanded([group], groups):
            out.setdefault(speaker, []).append(group)
    return out


def speakers(client: redis.Redis, config: LoadedConfig | None) -> list[SpeakerInfo]:
    """Every configured speaker, sorted by name, with its records from Redis (one round trip)."""
    if config is None:
        return []
    configured = config.config.speakers
    names = sorted(configured)
    records = IncidentStore(client).speaker_records(names)
    by_camera = camera_speakers(config)
    groups = speaker_groups(config)
    return [
        SpeakerInfo(
            name=name,
            kind=configured[name].kind,
            target=target(configured[name]),
            groups=tuple(groups.get(name, [])),
            cameras=tuple(cam for cam, names_ in by_camera.items() if name in names_),
            records=records[name],
        )
        for name in names
    ]


def health_state(health: Mapping[str, str]) -> HealthStateName:
    """ok, failed or unverifiable as the engine published it; unknown when no engine checked it lately."""
    if not health:
        return "unknown"
    state = health.get("state") or ("ok" if health.get("ok") == "1" else "failed")  # older engines: "ok" only
    for name in get_args(HealthStateName):
        if state == name:
            return name  # type: ignore[no-any-return]
    return "unknown"


def warning(info: SpeakerInfo) -> str | None:
    """Why a speaker needs attention (its last announcement failed, or its health check did), or None."""
    if info.records.announced.get("ok") == "0":
        return f"喇叭 {info.name} 上次广播失败 last announcement failed"
    if health_state(info.records.health) == "failed":
        return f"喇叭 {info.name} 故障 health check failed"
    return None


def camera_warnings(client: redis.Redis, config: LoadedConfig | None) -> dict[str, str]:
    """Camera -> a warning naming each of its speakers that failed its last announcement or health check."""
    if config is None or not config.config.speakers:
        return {}
    warned = {info.name: text for info in speakers(client, config) if (text := warning(info)) is not None}
    out = {}
    for camera, names in camera_speakers(config).items():
        texts = [warned[name] for name in names if name in warned]
        if texts:
            out[camera] = "; ".join(texts)
    return out
