"""Episodes: quick repeats of one rule on one camera grouped for review (pure functions, no store)."""

from __future__ import annotations

import dataclasses
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.incident import Incident
from monitor.web.episodes import Episode, complete, episode_key, group_episodes

T0 = 1_700_000_000.0


def incident(
    n: int, opened: float, closed: float | None, *, camera: str = "gate", rule: str = "crowd", status: str = "closed"
) -> Incident:
    return Incident(
        f"i{n:04d}", "gathering", rule, camera, "门口", T0 + opened, peak_count=n % 7, status=status,
        closed_ts=None if closed is None else T0 + closed,
    )  # fmt: skip


def ids(episodes: list[Episode]) -> list[list[str]]:
    return [[i.id for i in e.incidents] for e in episodes]


def test_a_crowd_reopening_every_half_minute_is_one_episode_other_rules_and_cameras_are_not() -> None:
    crowd = [incident(n, n * 30, n * 30 + 6) for n in range(8)]  # 8 incidents of 6 s in 4 minutes
    other_rule = incident(8, 100, 130, rule="checkpoint")
    other_camera = incident(9, 60, 70, camera="square")
    episodes = group_episodes([*crowd, other_rule, other_camera], gap_s=120)
    assert ids(episodes) == [[i.id for i in crowd], [other_rule.id], [other_camera.id]]  # newest first
    big = episodes[0]
    assert big.id == crowd[0].id and big.opened_ts == T0 and big.closed_ts == T0 + 7 * 30 + 6
    assert big.peak_count == 6 and big.latest_ts == T0 + 210


def test_the_gap_is_counted_from_the_latest_close_and_is_inclusive() -> None:
    a, b = incident(1, 0, 10), incident(2, 130, 140)  # 120 s after a closed
    assert ids(group_episodes([a, b], 120)) == [["i0001", "i0002"]]
    assert ids(group_episodes([a, b], 119.9)) == [["i0002"], ["i0001"]]
    assert ids(group_episodes([a, b], 0)) == [["i0002"], ["i0001"]], "0 groups nothing"
    long, short, late = incident(1, 0, 500), incident(2, 20, 30), incident(3, 600, 610)  # end = latest close (500)
    assert ids(group_episodes([late, short, long], 100)) == [["i0001", "i0002", "i0003"]]


def test_an_ongoing_incident_keeps_its_episode_open_and_most_urgent_status_shows() -> None:
    first = incident(1, 0, None, status="acknowledged")  # reviewed but still going on
    second = incident(2, 5000, 5006, status="closed")
    (episode,) = group_episodes([first, second], 60)
    assert episode.closed_ts is None and episode.status == "closed" and not episode.reviewed
    both = [incident(1, 0, 5, status="acknowledged"), incident(2, 10, 15, status="false_alarm")]
    (reviewed,) = group_episodes(both, 60)
    assert reviewed.reviewed and reviewed.status == "false_alarm"
    (urgent,) = group_episodes([*both, incident(3, 20, None, status="open")], 60)
    assert urgent.status == "open" and not urgent.reviewed


def test_records_without_a_rule_group_by_kind_and_zone() -> None:
    a = dataclasses.replace(incident(1, 0, 5), rule="")
    b = dataclasses.replace(incident(2, 10, 15), rule="")
    c = dataclasses.replace(incident(3, 20, 25), rule="", zone="其他")
    assert episode_key(a) == ("gate", "gathering/门口")
    assert ids(group_episodes([a, b, c], 60)) == [["i0003"], ["i0001", "i0002"]]


# Repeats of one rule: back-to-back incidents (each ends before the next opens), on a few cameras and rules.
@st.composite
def histories(draw: st.DrawFn) -> list[Incident]:
    out: list[Incident] = []
    n = itertools.count()
    for camera, rule in draw(st.sets(st.sampled_from([("gate", "a"), ("gate", "b"), ("square", "a")]), min_size=1)):
        t = draw(st.floats(0, 1000))
        for _ in range(draw(st.integers(0, 12))):
            t += draw(st.floats(0, 400))  # quiet time before it opens
            length = draw(st.floats(0, 300))
            still_open = draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans())
            status = draw(st.sampled_from(["closed", "acknowledged", "false_alarm", "open"]))
            end = None if still_open else t + length
            out.append(incident(next(n), t, end, camera=camera, rule=rule, status=status))
            if still_open:
                break  # nothing of this rule opens while one is going on
            t += length
    return draw(st.permutations(out))


@settings(max_examples=300, deadline=None)
@given(histories(), st.sampled_from([0, 30, 120, 600]))
def test_every_incident_is_in_exactly_one_episode_and_order_is_kept(history: list[Incident], gap: float) -> None:
    episodes = group_episodes(history, gap)
    members = [i for e in episodes for i in e.incidents]
    assert sorted(i.id for i in members) == sorted(i.id for i in history)
    assert len(members) == len(set(i.id for i in members))
    latest = [e.latest_ts for e in episodes]
    assert latest == sorted(latest, reverse=True), "episodes newest first"
    for episode in episodes:
        assert len({episode_key(i) for i in episode.incidents}) == 1
        opened = [i.opened_ts for i in episode.incidents]
        assert opened == sorted(opened), "incidents oldest first inside an episode"
        assert gap > 0 or len(episode.incidents) == 1
        for before, after in itertools.pairwise(episode.incidents):
            assert before.closed_ts is None or after.opened_ts - before.closed_ts <= gap
    for key in {episode_key(i) for i in history}:  # episodes of a key are farther apart than the gap
        own = sorted((e for e in episodes if episode_key(e.first) == key), key=lambda e: e.opened_ts)
        for earlier, later in itertools.pairwise(own):
            assert gap == 0 or (earlier.closed_ts is not None and later.opened_ts - earlier.closed_ts > gap)
    assert ids(group_episodes(list(reversed(history)), gap)) == ids(episodes), "input order does not matter"


@settings(max_examples=300, deadline=None)
@given(histories(), st.sampled_from([0, 30, 120]), st.integers(1, 4), st.data())
def test_a_page_found_complete_from_the_newest_incidents_is_what_all_of_them_give(
    history: list[Incident], gap: float, page: int, data: st.DataObject
) -> None:
    """What the episode list relies on to stop reading older incidents (durations here stay below the horizon)."""
    newest_first = sorted(history, key=lambda i: (i.opened_ts, i.id), reverse=True)  # the index's order
    everything = ids(group_episodes(history, gap))[:page]
    for read_count in range(1, len(newest_first)):
        read = newest_first[:read_count]
        episodes = group_episodes(read, gap)
        if len(episodes) > page and complete(episodes[:page], episodes, read[-1].opened_ts, gap, horizon_s=300):
            assert ids(episodes)[:page] == everything, read_count


def test_an_episode_is_not_complete_while_an_earlier_part_may_be_unread() -> None:
    old, mid, new = incident(1, 0, 6), incident(2, 30, 36), incident(3, 60, 66)
    episodes = group_episodes([new, mid], 120)
    assert not complete(episodes, episodes, mid.opened_ts, 120, horizon_s=300), "old may still join"
    assert complete(episodes, episodes, mid.opened_ts - 421, 120, horizon_s=300), "older than gap + horizon"
    separate = incident(4, -1000, -990)
    read = group_episodes([new, mid, old, separate], 120)
    assert complete(read[:1], read, separate.opened_ts, 120, horizon_s=300), "an earlier episode of the rule was read"
