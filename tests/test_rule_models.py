"""Config models for staffing, schedules, announcement policy, grouping and zone filters: valid and invalid."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError

from monitor.config.yamlmarks import load_with_marks
from monitor.rules.models import (
    AnnouncementPolicyConfig,
    GroupingConfig,
    ScheduleConfig,
    StaffingRuleConfig,
    WindowConfig,
    ZoneFilterConfig,
)
from monitor.rules.schedule import QuietHours
from monitor.rules.staffing import StaffingState
from monitor.types import Detections

STAFFING_YAML = """
kind: checkpoint_staffing
camera: gate
zone: checkpoint
min_staff: 2
unstaffed_s: 120
schedule:
  timezone: Asia/Shanghai
  windows:
    - {days: weekdays, start: "08:00", end: "18:00"}
    - {days: [fri, sat], start: "22:00", end: "06:00"}
  holidays: [2025-10-01, 2025-10-02]
  extra_days: [2025-09-28]
announcement: announcements/return_to_post.wav
cooldown_s: 300
repeat_after_s: 300
max_repeats: 2
priority: 5
quiet_hours:
  windows: [{start: "23:00", end: "07:00"}]
"""


def yaml_data(text: str) -> Any:
    return load_with_marks(text)[0]


def problems(model: type[BaseModel], data: Any) -> list[tuple[tuple[int | str, ...], str]]:
    """(location, message) as `monitor check` shows them (pydantic's "Value error, " prefix removed)."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return [(tuple(e["loc"]), e["msg"].removeprefix("Value error, ")) for e in info.value.errors()]


def sh(mo: int, d: int, h: int) -> float:
    return datetime(2025, mo, d, h, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


def test_documented_staffing_rule_is_valid_and_builds() -> None:
    rule = StaffingRuleConfig.model_validate(yaml_data(STAFFING_YAML))
    assert rule.rule_id == "checkpoint_staffing/gate/checkpoint"
    assert rule.schedule.windows[0].days == ("mon", "tue", "wed", "thu", "fri")
    assert rule.schedule.holidays == [date(2025, 10, 1), date(2025, 10, 2)]
    state = rule.build()
    assert isinstance(state, StaffingState) and state.params.min_staff == 2 and state.params.restored_s == 10
    schedule = state.schedule
    assert schedule.active(sh(9, 29, 9))  # Monday 09:00
    assert not schedule.active(sh(10, 1, 9))  # holiday
    assert schedule.active(sh(9, 28, 9))  # make-up Sunday
    assert schedule.active(sh(10, 4, 3))  # Friday night shift, Saturday 03:00
    policy = rule.build_policy()
    assert policy.priority == 5 and isinstance(policy.quiet_hours, QuietHours)
    assert policy.quiet_hours.active(sh(9, 29, 23))


def test_defaults() -> None:
    rule = StaffingRuleConfig.model_validate(
        {
            "kind": "checkpoint_staffing",
            "camera": "c",
            "zone": "z",
            "min_staff": 1,
            "schedule": {"windows": [{"start": "08:00", "end": "09:00"}]},
        }
    )
    assert rule.schedule.timezone == "Asia/Shanghai"
    assert rule.schedule.windows[0].days == ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    assert (rule.unstaffed_s, rule.restored_s, rule.tolerance_s, rule.max_gap_s) == (60, 10, 3, 10)
    assert rule.build_policy().params == AnnouncementPolicyConfig().build_policy().params


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        ("daily", ("mon", "tue", "wed", "thu", "fri", "sat", "sun")),
        ("weekends", ("sat", "sun")),
        ("Sat", ("sat",)),
        (["mon", "WED"], ("mon", "wed")),
    ],
)
def test_day_spellings(days: Any, expected: tuple[str, ...]) -> None:
    assert WindowConfig.model_validate({"days": days, "start": "08:00", "end": "9:30"}).days == expected


def test_times_are_normalised_and_24_00_is_an_end() -> None:
    w = WindowConfig.model_validate({"start": "8:05", "end": "24:00"})
    assert (w.start, w.end) == ("08:05", "24:00")
    assert (w.build().start_min, w.build().end_min) == (485, 1440)


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"start": "08:00", "end": "25:00"}, "end 25:00 is not a time HH:MM"),
        ({"start": "08:60", "end": "09:00"}, "start 08:60 is not a time HH:MM"),
        ({"start": "8am", "end": "09:00"}, "start 8am is not a time HH:MM"),
        ({"start": "24:00", "end": "06:00"}, "start 24:00 is not a time HH:MM (24:00 is only allowed as an end)"),
        ({"start": 8, "end": "09:00"}, "start 8 is not a time HH:MM"),
        ({"start": "08:00", "end": "08:00"}, "start and end are both 08:00 (for all day use 00:00-24:00)"),
        (
            {"days": ["mo"], "start": "08:00", "end": "09:00"},
            "unknown day 'mo': days must be mon..sun, or one of daily, weekdays, weekends",
        ),
        ({"days": [], "start": "08:00", "end": "09:00"}, "days must not be empty"),
    ],
)
def test_window_errors(window: dict[str, Any], message: str) -> None:
    assert [msg for _, msg in problems(WindowConfig, window)] == [message]


def test_unquoted_times_are_text_and_numbers_get_a_hint() -> None:
    data = yaml_data("start: 22:00\nend: 06:00\n")  # streams.yaml's loader has no YAML 1.1 base-60 numbers
    assert data == {"start": "22:00", "end": "06:00"}
    assert WindowConfig.model_validate(data).start == "22:00"
    assert problems(WindowConfig, {"start": 1320, "end": "06:00"}) == [  # e.g. from a plain YAML 1.1 tool
        (
            ("start",),
            'start 1320 is not a time HH:MM (YAML reads an unquoted 22:00 as the number 1320: write "22:00" in quotes)',
        )
    ]


def test_schedule_errors() -> None:
    assert problems(ScheduleConfig, {"timezone": "Asia/Shangai", "windows": [{"start": "08:00", "end": "09:00"}]}) == [
        (("timezone",), "unknown time zone 'Asia/Shangai' (did you mean 'Asia/Shanghai'?)")
    ]
    assert problems(ScheduleConfig, {"windows": []}) == [(("windows",), "a schedule needs at least one window")]
    both = {"windows": [{"start": "08:00", "end": "09:00"}], "holidays": ["2025-10-01"], "extra_days": ["2025-10-01"]}
    assert problems(ScheduleConfig, both) == [((), "2025-10-01 is both a holiday and an extra day")]
    assert problems(ScheduleConfig, {"windows": [{"start": "08:00", "end": "09:00"}], "holiday": []}) == [
        (("holiday",), "Extra inputs are not permitted")
    ]


def test_policy_errors_and_build() -> None:
    assert problems(AnnouncementPolicyConfig, {"max_repeats": 2}) == [
        ((), "max_repeats needs repeat_after_s (how long to wait between repeats)")
    ]
    assert problems(AnnouncementPolicyConfig, {"repeat_after_s": 0}) == [
        (("repeat_after_s",), "Input should be greater than 0")
    ]
    policy = AnnouncementPolicyConfig(cooldown_s=5, repeat_after_s=60, max_repeats=3, priority=2).build_policy()
    assert (policy.params.cooldown_s, policy.params.repeat_after_s, policy.params.max_repeats) == (5, 60, 3)
    assert policy.quiet_hours is None


def test_staffing_rule_errors() -> None:
    data = yaml_data(STAFFING_YAML)
    assert problems(StaffingRuleConfig, {**data, "min_staff": 0}) == [
        (("min_staff",), "Input should be greater than or equal to 1")
    ]
    no_zone = {k: v for k, v in data.items() if k != "zone"}
    assert problems(StaffingRuleConfig, no_zone) == [(("zone",), "Field required")]
    bad_day = {**data, "schedule": {"windows": [{"days": "someday", "start": "08:00", "end": "09:00"}]}}
    assert problems(StaffingRuleConfig, bad_day) == [
        (
            ("schedule", "windows", 0, "days"),
            "unknown day 'someday': days must be mon..sun, or one of daily, weekdays, weekends",
        )
    ]


def test_grouping_config() -> None:
    assert GroupingConfig() == GroupingConfig(k=1.0, min_size=2, max_height_ratio=None)
    assert problems(GroupingConfig, {"k": 0}) == [(("k",), "Input should be greater than 0")]
    assert problems(GroupingConfig, {"max_height_ratio": 0.5}) == [
        (("max_height_ratio",), "Input should be greater than or equal to 1")
    ]


def test_zone_filter_config_builds_pixel_masks() -> None:
    cfg = ZoneFilterConfig.model_validate(
        {"min_height_px": 40, "min_confidence": 0.4, "exclude": [[[0, 0], [0.5, 0], [0.5, 0.5]]], "anchor": "center"}
    )
    flt = cfg.build((800, 600))
    assert flt.exclude[0].tolist() == [[0, 0], [400, 0], [400, 300]]
    assert (flt.min_height_px, flt.min_confidence, flt.anchor) == (40, 0.4, "center")
    boxes = Detections(
        np.array([[280, 50, 320, 150], [500, 400, 560, 560]], np.float32), np.array([0.9, 0.9], np.float32)
    )
    assert flt.keep(boxes).tolist() == [False, True]


def test_zone_filter_errors() -> None:
    assert problems(ZoneFilterConfig, {"exclude": [[[0, 0], [1, 1]]]}) == [
        (("exclude",), "exclude[0]: a mask polygon needs at least 3 points, got 2")
    ]
    assert problems(ZoneFilterConfig, {"min_confidence": 1.5}) == [
        (("min_confidence",), "Input should be less than or equal to 1")
    ]
    assert problems(ZoneFilterConfig, {"anchor": "head"}) == [(("anchor",), "Input should be 'foot' or 'center'")]
