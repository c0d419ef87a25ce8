"""Announcement policy: cooldown, repeats then escalation, quiet hours, and resuming after a restart."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from monitor.rules.policy import (
    REASON_COOLDOWN,
    REASON_NO_INCIDENT,
    REASON_NOT_DUE,
    REASON_QUIET,
    AnnouncementPolicy,
    Decision,
    PolicyParams,
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


def test_a_resumed_incident_that_was_announced_does_not_announce_again_inside_the_cooldown() -> None:
    policy = AnnouncementPolicy(PolicyParams(cooldown_s=120, repeat_after_s=300, max_repeats=1))
    policy.resume(sh(10), announced_at=sh(10, 0, 5))
    assert not policy.decide(sh(10, 1), sh(10)).play  # restarted a minute later: no second "first" play
    repeat = policy.decide(sh(10, 5, 5), sh(10))
    assert (repeat.play, repeat.reason) == (True, "repeat 1/1")


def test_a_resumed_incident_never_announced_announces_now() -> None:
    policy = AnnouncementPolicy(PolicyParams(cooldown_s=120))
    policy.resume(sh(10), announced_at=None)
    assert policy.decide(sh(10, 1), sh(10)).play
