"""Rule runtimes over observations: track-based dwell, grouping, and the announcement policy on top."""

from __future__ import annotations

import numpy as np

from monitor.rules.models import GatheringRuleConfig
from monitor.rules.runtime import GatheringRuntime
from monitor.types import Detections, Observation, ZoneCount


def people(ids: list[int], spacing: float = 300.0) -> Detections:
    """Tracked people standing ``spacing`` px apart (100 px tall)."""
    xyxy = np.array([[i * spacing, 100, i * spacing + 40, 200] for i in range(len(ids))], np.float32)
    return Detections(xyxy, np.full(len(ids), 0.9, np.float32), None, np.array(ids, np.int64))


def observe(ts: float, dets: Detections) -> Observation:
    return Observation("cam", ts, dets, {"z": ZoneCount("z", len(dets), tuple(range(len(dets))))})


def rule(**extra: object) -> GatheringRuleConfig:
    return GatheringRuleConfig.model_validate(
        {"kind": "gathering", "camera": "cam", "zone": "z", "min_people": 3, "dwell_s": 4, "clear_s": 2, **extra}
    )


def run(runtime: GatheringRuntime, frames: list[Detections]) -> list[tuple[str, float]]:
    return [(t.kind, t.ts) for i, d in enumerate(frames) for t in runtime.step(observe(i * 0.5, d), {}).transitions]


def test_track_dwell_opens_only_when_the_same_people_stay() -> None:
    staying = [people([1, 2, 3])] * 12  # the same three people for 6 s
    passing = [people([10 + i, 20 + i, 30 + i]) for i in range(12)]  # always three, never the same ones
    assert run(GatheringRuntime(rule(dwell_by="tracks")), staying) == [("opened", 4.0)]
    assert run(GatheringRuntime(rule(dwell_by="tracks")), passing) == []
    assert run(GatheringRuntime(rule()), passing) == [("opened", 4.0)], "count-based dwell cannot tell them apart"


def test_track_state_is_bounded_to_the_people_present() -> None:
    runtime = GatheringRuntime(rule(dwell_by="tracks"))
    for i in range(1000):
        runtime.step(observe(i * 0.5, people([i, i + 1000])), {})
    assert len(runtime._first_seen) == 2


def test_grouping_counts_only_people_standing_together_and_reports_them() -> None:
    together = Detections(  # three people within a body height of each other, one far away
        np.array([[0, 100, 40, 200], [50, 115, 90, 215], [100, 90, 140, 190], [600, 100, 640, 200]], np.float32),
        np.full(4, 0.9, np.float32),
        None,
        np.array([5, 6, 7, 8], np.int64),
    )
    runtime = GatheringRuntime(rule(min_people=3, dwell_s=0, grouping={"k": 1.0, "min_size": 2}))
    [opened] = runtime.step(observe(0.0, together), {}).transitions
    assert (opened.kind, opened.count) == ("opened", 3)
    assert opened.details["track_ids"] == [5, 6, 7] and len(opened.details["group_polygon"]) >= 3


def test_policy_repeats_then_escalates_while_the_gathering_stays() -> None:
    runtime = GatheringRuntime(rule(dwell_s=0, cooldown_s=1, repeat_after_s=2, max_repeats=1))
    decisions = [runtime.step(observe(i * 0.5, people([1, 2, 3])), {}).decision for i in range(14)]
    plays = [i * 0.5 for i, d in enumerate(decisions) if d.play]
    assert plays == [0.0, 2.0], "the first play, then one repeat"
    assert [i * 0.5 for i, d in enumerate(decisions) if d.escalate] == [4.0], "then the incident needs attention"
