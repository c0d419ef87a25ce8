"""One runtime per rule: measure an observation, advance the state machine, decide announcements.

Pure (no I/O): the engine hands the returned ``RuleStep`` to the dispatcher (monitor/actions/dispatcher.py),
which turns it into incident records, clips and playbacks off the detection loop. Rule kinds from the config
expose ``step`` per observation of their camera and ``tick`` on a timer (so schedules and repeats advance
even when a camera is silent); the camera-offline rule is fed the camera's receiving state instead. All of
them emit the one ``Transition`` type and can ``resume`` an incident left open by a previous run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from monitor.analyze.gathering import find_groups
from monitor.analyze.zones import Polygon
from monitor.rules.gathering import GatheringParams, GatheringState
from monitor.rules.models import GatheringRuleConfig, RuleConfig, StaffingRuleConfig
from monitor.rules.offline import OfflineState
from monitor.rules.policy import REASON_NO_INCIDENT, AnnouncementPolicy, Decision
from monitor.types import Observation, Transition


@dataclass(frozen=True, slots=True)
class RuleStep:
    """What one observation or tick caused."""

    transitions: list[Transition]
    decision: Decision


class GatheringRuntime:
    """Gathering: people in a zone (optionally only those standing together), dwell, hysteresis, policy."""

    incident_kind = "gathering"

    def __init__(self, config: GatheringRuleConfig) -> None:
        self.config = config
        by_tracks = config.dwell_by == "tracks"
        self.state = GatheringState(
            GatheringParams(
                config.min_people,
                0.0 if by_tracks else config.dwell_s,  # with tracks the dwell is per person (see _measure)
                config.close_level,
                config.clear_s,
                config.tolerance_s,
            )
        )
        self.policy: AnnouncementPolicy = config.build_policy()
        self.opened_at: float | None = None
        self._first_seen: dict[int, float] = {}  # track id -> first time in the measured set (bounded: present ids)

    def step(self, obs: Observation, zones: Mapping[str, Polygon]) -> RuleStep:
        """Advance with one observation of the rule's camera."""
        count, details = self._measure(obs, zones)
        transitions = []
        for event in self.state.update(obs.ts, count):
            if event.kind == "opened":
                self.opened_at = event.ts
                details = {"threshold": self.config.min_people, **details}
            elif event.kind == "closed":
                self.opened_at = None
            transitions.append(replace(event, details={**event.details, **details}))
        return RuleStep(transitions, self.policy.decide(obs.ts, self.opened_at))

    def resume(self, opened_at: float, peak: int, announced_at: float | None) -> None:
        """Carry on an incident opened before a restart, without repeating its first announcement."""
        self.state.resume(opened_at, peak)
        self.opened_at = opened_at
        self.policy.resume(opened_at, announced_at)

    def tick(self, now: float) -> RuleStep:
        """Repeats and escalation advance with time alone."""
        return RuleStep([], self.policy.decide(now, self.opened_at))

    def _measure(self, obs: Observation, zones: Mapping[str, Polygon]) -> tuple[int, dict[str, Any]]:
        cfg, dets = self.config, obs.detections
        members = np.asarray(obs.zones[cfg.zone].members if cfg.zone else range(len(dets)), dtype=np.intp)
        details: dict[str, Any] = {}
        if cfg.grouping is not None and len(members):
            mask = np.zeros(len(dets), bool)
            mask[members] = True
            groups = find_groups(
                dets, k=cfg.grouping.k, min_size=cfg.grouping.min_size, mask=mask,
                max_height_ratio=cfg.grouping.max_height_ratio,
            )  # fmt: skip
            members = np.asarray(groups[0].members if groups else (), dtype=np.intp)
            if groups:
                details["group_polygon"] = groups[0].polygon.round(1).tolist()
                details["group_spread_body_heights"] = round(float(groups[0].spread_in_body_heights), 2)
        ids = [] if dets.tracker_id is None else [int(i) for i in dets.tracker_id[members] if i >= 0]
        if ids:
            details["track_ids"] = sorted(ids)
        if cfg.dwell_by != "tracks":
            return len(members), details
        present = set(ids)
        self._first_seen = {i: t for i, t in self._first_seen.items() if i in present}
        for i in present:
            self._first_seen.setdefault(i, obs.ts)
        stayed = [i for i in present if obs.ts - self._first_seen[i] >= cfg.dwell_s]
        details["stayed_track_ids"] = sorted(stayed)
        return len(stayed), details


class StaffingRuntime:
    """Checkpoint staffing: fewer than min_staff in the zone during duty hours for too long."""

    incident_kind = "checkpoint_unstaffed"

    def __init__(self, config: StaffingRuleConfig) -> None:
        self.config = config
        self.state = config.build()
        self.policy = config.build_policy()
        self.opened_at: float | None = None

    def step(self, obs: Observation, zones: Mapping[str, Polygon]) -> RuleStep:
        """Advance with one observation of the checkpoint's camera."""
        del zones  # staffing counts the zone as the engine counted it
        count = obs.zones[self.config.zone].count
        return self._after(self.state.update(obs.ts, count), obs.ts)

    def tick(self, now: float) -> RuleStep:
        """Duty windows end and reminders repeat even when the camera is silent."""
        return self._after(self.state.tick(now), now)

    def resume(self, opened_at: float, peak: int, announced_at: float | None) -> None:
        """Carry on an incident opened before a restart, without repeating its first announcement."""
        self.state.resume(opened_at, peak)
        self.opened_at = opened_at
        self.policy.resume(opened_at, announced_at)

    def _after(self, events: list[Transition], now: float) -> RuleStep:
        transitions = []
        for event in events:
            if event.kind == "opened":
                self.opened_at = event.since
                details = {"threshold": self.config.min_staff, "required": self.config.min_staff}
                transitions.append(replace(event, details=details))
            else:
                self.opened_at = None
                transitions.append(replace(event, ts=event.until or event.ts))
        return RuleStep(transitions, self.policy.decide(now, self.opened_at))


class OfflineRuntime:
    """Camera offline: no frames for longer than the camera's grace period. It never announces."""

    incident_kind = "camera_offline"

    def __init__(self, camera: str, grace_s: float, started_at: float) -> None:
        self.camera = camera
        self.rule_id = f"camera_offline/{camera}"
        self.state = OfflineState(grace_s, started_at)

    def update(self, now: float, receiving: bool, last_frame_at: float | None, error: str | None) -> RuleStep:
        """Advance with the camera's receiving state; ``error`` is the stream's last error (redacted)."""
        transitions = self.state.update(now, receiving, last_frame_at)
        details = {"last_error": error}
        return RuleStep([replace(t, details=details) if t.kind == "opened" else t for t in transitions], NO_DECISION)

    def resume(self, opened_at: float, peak: int, announced_at: float | None) -> None:
        """The camera was still dark when the engine stopped: the same incident stays open until it is back."""
        del peak, announced_at
        self.state.resume(opened_at)


NO_DECISION = Decision(False, REASON_NO_INCIDENT)

RuleRuntime = GatheringRuntime | StaffingRuntime


def build_runtime(config: RuleConfig) -> RuleRuntime:
    """The runtime for a configured rule."""
    if isinstance(config, GatheringRuleConfig):
        return GatheringRuntime(config)
    return StaffingRuntime(config)
