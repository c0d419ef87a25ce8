"""streams.yaml models for checkpoint staffing, schedules, announcement policy, grouping and zone filters.

Written like monitor/config.py (pydantic v2, extra="forbid", frozen, a description on every field)
so the lead can add them to the ``rules:`` union and to zones. Each model builds the pure runtime
object it configures (``build``), so the engine never reads config fields directly.

Times are strings "HH:MM". YAML 1.1 (PyYAML) reads an unquoted ``22:00`` as the number 1320
(base 60) while ``08:00`` stays a string; a number is therefore rejected with a message that says
what was probably meant and to quote it.
"""

from __future__ import annotations

import difflib
import re
import zoneinfo
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from monitor.analyze.filters import Anchor, DetectionFilter
from monitor.analyze.zones import to_pixels
from monitor.rules.policy import AnnouncementPolicy, PolicyParams
from monitor.rules.schedule import DEFAULT_TIMEZONE, WEEKDAYS, QuietHours, Schedule, Window
from monitor.rules.staffing import StaffingParams, StaffingState

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAY_GROUPS: dict[str, tuple[str, ...]] = {"daily": WEEKDAYS, "weekdays": WEEKDAYS[:5], "weekends": WEEKDAYS[5:]}
_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_hhmm(value: object, field: str, allow_24: bool) -> int:
    """Minutes after midnight of an "HH:MM" string; ValueError with a message for the config file."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        hint = ""
        if isinstance(value, int) and 60 <= value <= 24 * 60:
            hh_mm = f"{value // 60:02d}:{value % 60:02d}"
            hint = f' (YAML reads an unquoted {hh_mm} as the number {value}: write "{hh_mm}" in quotes)'
        raise ValueError(f"{field} {value} is not a time HH:MM{hint}")
    if not isinstance(value, str):
        raise ValueError(f"{field} {value!r} is not a time HH:MM")
    match = _HHMM.match(value.strip())
    if match is None:
        raise ValueError(f"{field} {value} is not a time HH:MM")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes >= 60 or hours > 24 or (hours == 24 and (minutes or not allow_24)):
        extra = " (24:00 is only allowed as an end)" if hours == 24 and not minutes and not allow_24 else ""
        raise ValueError(f"{field} {value} is not a time HH:MM{extra}")
    return hours * 60 + minutes


class WindowConfig(_Model):
    """One weekly time window in local wall time; an end at or before the start runs past midnight."""

    days: tuple[Weekday, ...] = Field(
        ("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
        description="Days the window starts on: a list of mon..sun, or daily, weekdays (mon-fri), weekends.",
    )
    start: str = Field(description='Local start time "HH:MM" (quote it in YAML).')
    end: str = Field(description='Local end time "HH:MM", up to "24:00"; at or before start = the next day.')

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = DAY_GROUPS.get(value.strip().lower(), [value])
        if not isinstance(value, list | tuple):
            raise ValueError(f"days must be a list of mon..sun, or daily, weekdays or weekends (got {value!r})")
        if not value:
            raise ValueError("days must not be empty")
        days = tuple(str(d).strip().lower() for d in value)
        for day in days:
            if day not in WEEKDAYS:
                raise ValueError(f"unknown day '{day}': days must be mon..sun, or one of daily, weekdays, weekends")
        return days

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: Any) -> str:
        return _format(parse_hhmm(value, "start", allow_24=False))

    @field_validator("end", mode="before")
    @classmethod
    def _end(cls, value: Any) -> str:
        return _format(parse_hhmm(value, "end", allow_24=True))

    @model_validator(mode="after")
    def _not_empty(self) -> WindowConfig:
        if self.start == self.end:
            raise ValueError(f"start and end are both {self.start} (for all day use 00:00-24:00)")
        return self

    def build(self) -> Window:
        """The runtime window."""
        return Window(
            days=frozenset(WEEKDAYS.index(d) for d in self.days),
            start_min=parse_hhmm(self.start, "start", allow_24=False),
            end_min=parse_hhmm(self.end, "end", allow_24=True),
        )


def _format(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


class ScheduleConfig(_Model):
    """Weekly windows in an IANA time zone, with holidays (no windows start) and make-up days."""

    timezone: str = Field(DEFAULT_TIMEZONE, description="IANA time zone of the windows, e.g. Asia/Shanghai.")
    windows: list[WindowConfig] = Field(description="When the schedule is on (any of the windows).")
    holidays: list[date] = Field(
        default_factory=list, description="Dates (YYYY-MM-DD) on which no window starts, e.g. public holidays."
    )
    extra_days: list[date] = Field(
        default_factory=list,
        description="Dates that follow extra_days_like's windows instead of their own weekday's (make-up workdays).",
    )
    extra_days_like: Weekday = Field("mon", description="Which weekday's windows the extra_days follow.")

    @field_validator("windows")
    @classmethod
    def _some_windows(cls, windows: list[WindowConfig]) -> list[WindowConfig]:
        if not windows:
            raise ValueError("a schedule needs at least one window")
        return windows

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            hint = difflib.get_close_matches(value, sorted(zoneinfo.available_timezones()), n=1)
            raise ValueError(
                f"unknown time zone '{value}'" + (f" (did you mean '{hint[0]}'?)" if hint else " (use an IANA name)")
            ) from None
        return value

    @model_validator(mode="after")
    def _disjoint(self) -> ScheduleConfig:
        both = sorted(set(self.holidays) & set(self.extra_days))
        if both:
            raise ValueError(f"{both[0].isoformat()} is both a holiday and an extra day")
        return self

    def build(self, cls: type[Schedule] = Schedule) -> Schedule:
        """The runtime schedule (``cls=QuietHours`` for quiet hours)."""
        return cls(
            (w.build() for w in self.windows),
            self.timezone,
            self.holidays,
            self.extra_days,
            WEEKDAYS.index(self.extra_days_like),
        )


class AnnouncementPolicyConfig(_Model):
    """When a rule's announcement plays: cooldown, repeats then escalation, quiet hours, priority.

    Every rule kind inherits these fields (they sit directly on the rule in streams.yaml).
    """

    announcement: str | None = Field(None, description="Audio file (WAV/MP3/OGG) played on the camera's speakers.")
    speakers: list[str] | None = Field(None, description="Speakers or speaker groups to use instead of the camera's.")
    chime: str | None = Field(None, description="Short attention tone played before the announcement.")
    cooldown_s: float = Field(120.0, ge=0, description="Minimum time between two plays of this rule.")
    repeat_after_s: float | None = Field(
        None, gt=0, description="Play again this long after the previous one while the incident is open."
    )
    max_repeats: int = Field(
        0, ge=0, description="Repeats after the first play; when one more would be due the incident needs_attention."
    )
    quiet_hours: ScheduleConfig | None = Field(
        None, description="Windows when nothing is played aloud (incidents are still logged and escalate)."
    )
    priority: int = Field(0, description="When two rules want the same speaker at once, the higher priority plays.")

    @model_validator(mode="after")
    def _repeats(self) -> AnnouncementPolicyConfig:
        if self.max_repeats > 0 and self.repeat_after_s is None:
            raise ValueError("max_repeats needs repeat_after_s (how long to wait between repeats)")
        return self

    def build_policy(self) -> AnnouncementPolicy:
        """The runtime policy (one per rule)."""
        quiet = None if self.quiet_hours is None else self.quiet_hours.build(QuietHours)
        params = PolicyParams(self.cooldown_s, self.repeat_after_s, self.max_repeats, self.priority)
        return AnnouncementPolicy(params, quiet)


class GroupingConfig(_Model):
    """Who stands together: feet closer than k body heights (perspective-independent)."""

    k: float = Field(1.0, gt=0, le=10, description="Feet closer than this many mean body heights link two people.")
    min_size: int = Field(2, ge=1, description="Smallest group reported.")
    max_height_ratio: float | None = Field(
        None, ge=1, description="Do not link people whose heights differ more than this (near vs far); null = off."
    )


Point = tuple[float, float]


class ZoneFilterConfig(_Model):
    """What a zone ignores: small or unsure detections, and people on posters, statues or reflections."""

    min_height_px: float | None = Field(None, gt=0, description="Ignore boxes shorter than this (pixels).")
    min_confidence: float | None = Field(None, ge=0, le=1, description="Ignore detections less confident than this.")
    exclude: list[list[Point]] = Field(
        default_factory=list,
        description="Masks (polygons, relative 0..1 or pixels): detections whose anchor is inside are ignored.",
    )
    anchor: Anchor = Field("foot", description="Point tested against the masks: foot (bottom centre) or center.")

    @field_validator("exclude")
    @classmethod
    def _polygons(cls, polygons: list[list[Point]]) -> list[list[Point]]:
        for i, points in enumerate(polygons):
            if len(points) < 3:
                raise ValueError(f"exclude[{i}]: a mask polygon needs at least 3 points, got {len(points)}")
            if any(x < 0 or y < 0 for x, y in points):
                raise ValueError(f"exclude[{i}]: polygon coordinates must not be negative")
        return polygons

    def build(self, size: tuple[int, int]) -> DetectionFilter:
        """The runtime filter for an image of ``size`` = (width, height)."""
        masks = tuple(to_pixels(p, size, all(x <= 1.0 and y <= 1.0 for x, y in p)) for p in self.exclude)
        return DetectionFilter(self.min_height_px, self.min_confidence, masks, self.anchor)


class GatheringRuleConfig(AnnouncementPolicyConfig):
    """Too many people (in a zone, or standing together) for too long: announce, notify, log an incident."""

    kind: Literal["gathering"]
    name: str | None = Field(None, description="Name shown on incidents (default: kind/camera/zone).")
    camera: str = Field(description="Camera the rule watches.")
    zone: str | None = Field(None, description="Zone on that camera; omitted = the whole image.")
    min_people: int = Field(ge=1, description="Open an incident at this many people.")
    dwell_s: float = Field(5.0, ge=0, description="They must stay this long before the incident opens.")
    dwell_by: Literal["count", "tracks"] = Field(
        "count",
        description="count: the count stayed at min_people for dwell_s; tracks: min_people tracked people "
        "each stayed dwell_s (the same people, not just as many).",
    )
    grouping: GroupingConfig | None = Field(
        None, description="Count only people standing together (largest group, perspective-aware); null = all."
    )
    close_below: int | None = Field(
        None, ge=0, description="Close once the count is below this (default min_people): the hysteresis band."
    )
    clear_s: float = Field(10.0, ge=0, description="The count must stay below close_below this long to close.")
    tolerance_s: float = Field(
        1.5, ge=0, description="Dips shorter than this (a missed detection) do not reset the dwell timer."
    )

    @property
    def close_level(self) -> int:
        """Count below which the incident starts to clear."""
        return self.min_people if self.close_below is None else self.close_below

    @property
    def rule_id(self) -> str:
        """Stable identifier used in incidents and logs."""
        return self.name or f"{self.kind}/{self.camera}/{self.zone or '*'}"


class StaffingRuleConfig(AnnouncementPolicyConfig):
    """A checkpoint zone needs at least min_staff people during its duty schedule."""

    kind: Literal["checkpoint_staffing"]
    name: str | None = Field(None, description="Name shown on incidents (default: kind/camera/zone).")
    camera: str = Field(description="Camera that sees the checkpoint.")
    zone: str = Field(description="The checkpoint zone on that camera.")
    min_staff: int = Field(ge=1, description="People needed in the zone while on duty.")
    unstaffed_s: float = Field(
        60.0, ge=0, description="Fewer than min_staff for this long opens a checkpoint_unstaffed incident."
    )
    restored_s: float = Field(10.0, ge=0, description="Staffing must be back this long to close the incident.")
    tolerance_s: float = Field(
        3.0, ge=0, description="Blips shorter than this (a missed detection, a passer-by) do not reset the timers."
    )
    max_gap_s: float = Field(
        10.0, gt=0, description="Longer without observations is a gap: timers do not run across it."
    )
    schedule: ScheduleConfig = Field(description="Duty hours; outside them the rule is silent.")

    @property
    def rule_id(self) -> str:
        """Stable identifier used in incidents and logs."""
        return self.name or f"{self.kind}/{self.camera}/{self.zone}"

    def params(self) -> StaffingParams:
        """The state machine's thresholds."""
        return StaffingParams(self.min_staff, self.unstaffed_s, self.restored_s, self.tolerance_s, self.max_gap_s)

    def build(self) -> StaffingState:
        """A fresh state machine for this rule."""
        return StaffingState(self.params(), self.schedule.build())


RuleConfig = Annotated[GatheringRuleConfig | StaffingRuleConfig, Field(discriminator="kind")]
