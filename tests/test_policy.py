"""Announcement policy: cooldown, repeats then escalation, quiet hours, and speaker priority."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from monitor.rules.gathering import GatheringParams
from monitor.rules.gathering_policy import PolicyGatheringState
from monitor.rules.policy import (
    REASON_COOLDOWN,
    REASON_NO_INCIDENT,
    REASON_NOT_DUE,
    REASON_QUIET,
    AnnouncementPolicy,
    Decision,
    PlayRequest,
    PolicyParams,
    SpeakerArbiter,
)
from monitor.rules.schedule import QuietHours, Window


def sh(h: int, mi: int = 0, s: float = 0, d: int = 29) -> float:
    return datetime(2025, 9, d, h, mi, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() + s


QUIET = QuietHours([Window(frozenset(range(7)), 22 * 60, 7 * 60)])  # 22:00-07:00 Asia/Shanghai


def run(
    policy: AnnouncementPolicy, open_since: float, start: float, end: float, step: float = 1.0
) -> list[tuple[int, Decision]]:
    """Decide once per ``step`` seconds while the incident is open; keep the notable ones (seconds from start)."""
    out = []
    t = start
    while t < end:
        d = policy.decide(t, open_since)
        if d.notable:
            out.append((round(t - start), d))
        t += step
    return out


def test_first_announcement_plays_when_the_incident_opens() -> None:
    policy = AnnouncementPolicy(PolicyParams(cooldown_s=120))
    first = policy.decide(sh(10), sh(10))
    assert (first.play, first.reason, first.attempt, first.escalate) == (True, "announce", 1, False)
    assert policy.decide(sh(10, 0, 1), sh(10)) == Decision(False, REASON_NOT_DUE)  # no repeats configured
    assert policy.decide(sh(10, 0, 2), None) == Decision(False, REASON_NO_INCIDENT)


def test_repeats_up_to_m_then_escalates_once() -> None:
    policy = AnnouncementPolicy(PolicyParams(cooldown_s=30, repeat_after_s=60, max_repeats=2))
    start = sh(10)
    notable = run(policy, start, start, start + 600)
    assert [(t, d.play, d.reason, d.escalate) for t, d in notable] == [
        (0, True, "announce", False),
        (60, True, "repeat 1/2", False),
        (120, True, "repeat 2/2", False),
        (180, False, "escalated: still open after 3 announcement(s)", True),
    ]
    assert policy.escalated


def test_zero_repeats_escalates_after_one_interval() -> None:
    policy = AnnouncementPolicy(PolicyParams(repeat_after_s=90, max_repeats=0))
    notable = run(policy, sh(10), sh(10), sh(10) + 300)
    assert [(t, d.play, d.escalate) for t, d in notable] == [(0, True, False), (90, False, True)]


def test_cooldown_spans_incidents_and_the_held_back_announcement_plays_later() -> None:
    policy = AnnouncementPolicy(PolicyParams(cooldown_s=120))
    assert policy.decide(sh(10), sh(10)).play
    assert policy.decide(sh(10, 0, 20), None).reason == REASON_NO_INCIDENT  # the first incident closed
    second_open = sh(10, 0, 30)
    notable = run(policy, second_open, second_open, second_open + 200)
    # reported once as held back, then played when the cooldown (from 10:00:00) is over, 90 s later
    assert [(t, d.play, d.reason) for t, d in notable] == [
        (0, False, REASON_COOLDOWN),
        (90, True, "announce"),
    ]


def test_cooldown_longer_than_repeat_interval_spaces_the_repeats() -> None:
    policy = AnnouncementPolicy(PolicyParams(cooldown_s=100, repeat_after_s=30, max_repeats=1))
    notable = run(policy, sh(10), sh(10), sh(10) + 400)
    assert [(t, d.reason) for t, d in notable] == [
        (0, "announce"),
        (30, REASON_COOLDOWN),
        (100, "repeat 1/1"),
        (130, "escalated: still open after 2 announcement(s)"),
    ]


def test_quiet_hours_suppress_play_but_attempts_and_escalation_go_on() -> None:
    policy = AnnouncementPolicy(PolicyParams(cooldown_s=0, repeat_after_s=300, max_repeats=2), QUIET)
    start = sh(21, 50)
    notable = run(policy, start, start, start + 1200, step=10)
    assert [(t, d.play, d.reason, d.escalate) for t, d in notable] == [
        (0, True, "announce", False),  # 21:50
        (300, True, "repeat 1/2", False),  # 21:55
        (600, False, REASON_QUIET, False),  # 22:00: the second repeat is due but must not be heard
        (900, False, "escalated: still open after 3 announcement(s)", True),  # the center is told anyway
    ]


def test_quiet_hours_end_lets_announcements_play_again() -> None:
    policy = AnnouncementPolicy(PolicyParams(cooldown_s=0, repeat_after_s=600, max_repeats=5), QUIET)
    start = sh(6, 45)
    notable = run(policy, start, start, start + 1500, step=15)
    assert [(t, d.play, d.reason, d.attempt) for t, d in notable] == [
        (0, False, REASON_QUIET, 1),  # 06:45
        (600, False, REASON_QUIET, 2),  # 06:55
        (1200, True, "repeat 2/5", 3),  # 07:05: quiet hours are over
    ]


def test_a_new_incident_starts_a_new_timeline() -> None:
    policy = AnnouncementPolicy(PolicyParams(cooldown_s=0, repeat_after_s=10, max_repeats=0))
    assert policy.decide(sh(10), sh(10)).play
    assert policy.decide(sh(10, 0, 10), sh(10)).escalate
    fresh = policy.decide(sh(11), sh(11))
    assert (fresh.play, fresh.reason, fresh.attempt) == (True, "announce", 1)
    assert not policy.escalated


def test_policy_params_are_checked() -> None:
    with pytest.raises(ValueError, match="repeat_after_s must be positive"):
        PolicyParams(repeat_after_s=0)


def test_higher_priority_wins_a_shared_speaker_in_one_batch() -> None:
    arbiter = SpeakerArbiter()
    gathering = PlayRequest("gathering/square", ("horn_a", "horn_b"), priority=1, duration_s=8)
    staffing = PlayRequest("staffing/gate", ("horn_b",), priority=5, duration_s=5)
    g_gather, g_staff = arbiter.request(100.0, [gathering, staffing])
    assert g_staff.granted == ("horn_b",) and g_staff.denied == ()
    assert g_gather.granted == ("horn_a",)
    assert g_gather.denied == (("horn_b", "staffing/gate"),)
    assert g_gather.reason == "suppressed: speaker busy with a higher-priority rule: horn_b (staffing/gate)"


def test_equal_priority_goes_to_the_earlier_request() -> None:
    a = PlayRequest("a", ("horn",), priority=2, duration_s=3)
    b = PlayRequest("b", ("horn",), priority=2, duration_s=3)
    ga, gb = SpeakerArbiter().request(0.0, [a, b])
    assert ga.granted == ("horn",) and gb.denied == (("horn", "a"),)


def test_busy_speaker_is_held_until_its_playback_ends_unless_preempted() -> None:
    arbiter = SpeakerArbiter()
    arbiter.request(0.0, [PlayRequest("low", ("horn",), priority=1, duration_s=10)])
    (denied,) = arbiter.request(5.0, [PlayRequest("same", ("horn",), priority=1, duration_s=2)])
    assert denied.denied == (("horn", "low"),)
    (preempting,) = arbiter.request(6.0, [PlayRequest("urgent", ("horn",), priority=9, duration_s=2)])
    assert preempting.granted == ("horn",) and preempting.preempted == (("horn", "low"),)
    assert arbiter.busy(7.0) == {"horn": "urgent"}
    (later,) = arbiter.request(8.0, [PlayRequest("low", ("horn",), priority=1, duration_s=10)])
    assert later.granted == ("horn",)  # urgent finished at 8.0


def test_arbiter_state_is_bounded_by_busy_speakers() -> None:
    arbiter = SpeakerArbiter()
    for i in range(10_000):
        arbiter.request(float(i), [PlayRequest("r", (f"spk{i % 50}",), priority=0, duration_s=2)])
    assert len(arbiter._held) <= 3


GATHERING = GatheringParams(min_people=4, dwell_s=5, close_level=4, clear_s=10, tolerance_s=1.5, cooldown_s=0)


def test_gathering_with_policy_repeats_while_the_crowd_stays_then_escalates() -> None:
    rule = PolicyGatheringState(
        GATHERING, AnnouncementPolicy(PolicyParams(cooldown_s=60, repeat_after_s=60, max_repeats=1))
    )
    steps = [(i * 0.5, rule.update(i * 0.5, 5 if i < 400 else 0)) for i in range(460)]  # crowd for 200 s
    transitions = [(t, e.transition, e.announce) for t, s in steps for e in s.events]
    assert transitions == [(5.0, "opened", True), (210.0, "closed", False)]
    notable = [(t, s.decision.reason) for t, s in steps if s.decision.notable]
    assert notable == [
        (5.0, "announce"),
        (65.0, "repeat 1/1"),
        (125.0, "escalated: still open after 2 announcement(s)"),
    ]


def test_gathering_with_policy_reopening_within_cooldown_is_silent_then_plays_if_it_persists() -> None:
    rule = PolicyGatheringState(GATHERING, AnnouncementPolicy(PolicyParams(cooldown_s=120)))
    first = [rule.update(i * 0.5, 4 if i < 12 else 0) for i in range(40)]  # opens at 5 s, closes at 16 s
    second = [(30 + i * 0.5, rule.update(30 + i * 0.5, 4)) for i in range(300)]  # reopens at 35 s, stays
    assert [(e.transition, e.announce) for s in first for e in s.events] == [("opened", True), ("closed", False)]
    assert [(e.transition, e.announce) for _, s in second for e in s.events] == [("opened", False)]
    notable = [(t, s.decision.reason) for t, s in second if s.decision.notable]
    assert notable == [(35.0, REASON_COOLDOWN), (125.0, "announce")]  # 120 s after the first play at 5 s
