"""Hot reload, decided purely: what a new streams.yaml means for the running cameras and speakers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from monitor.config import LoadedConfig

RESTART_KEYS = ("redis_url", "data_dir", "web", "notify", "retention", "clips", "cluster")
INPUT_KEYS = (
    "url",
    "inputs",
    "detect_fps",
    "hwaccel",
    "sampling",
    "speed",
    "loop",
    "open_timeout_s",
    "read_timeout_s",
    "reconnect_max_s",
    "detector",
)


def input_changed(old: LoadedConfig, new: LoadedConfig, name: str) -> bool:
    """Whether the camera's stream or model settings changed (which needs a restart of its workers)."""
    a, b = old.config.cameras[name], new.config.cameras[name]
    return any(getattr(a, k) != getattr(b, k) for k in INPUT_KEYS) or old.detector_for(name) != new.detector_for(name)


@dataclass(frozen=True)
class ReloadPlan:
    """Cameras to add, remove, restart (input or model changed) or update in place (zones, rules, speakers)."""

    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    restart: list[str] = field(default_factory=list)
    update: list[str] = field(default_factory=list)
    speakers_changed: bool = False
    needs_restart: list[str] = field(default_factory=list)  # top-level keys only a restart applies


def plan_reload(old: LoadedConfig, new: LoadedConfig, running: Iterable[str]) -> ReloadPlan:
    """Compare two configs; cameras not mentioned in the plan are untouched."""
    running = list(running)
    plan = ReloadPlan(
        speakers_changed=(old.config.speakers, old.config.speaker_groups)
        != (new.config.speakers, new.config.speaker_groups),
        needs_restart=[k for k in RESTART_KEYS if getattr(old.config, k) != getattr(new.config, k)],
        remove=[n for n in running if n not in new.config.cameras],
    )
    for name in new.config.cameras:
        if name not in running:
            plan.add.append(name)
        elif input_changed(old, new, name):
            plan.restart.append(name)
        else:
            plan.update.append(name)
    return plan
