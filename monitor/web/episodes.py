"""Episodes: incidents of one camera and rule that reopen within a short gap, reviewed as one.

A crowd that keeps forming and thinning opens and closes its rule's incident many times in minutes; staff
want to see (and review) that as one thing. Pure functions on ``Incident`` values: no store, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from monitor.incident import REVIEWED, Incident

# Review urgency, most urgent first: an episode shows the most urgent status among its incidents.
_URGENCY = ("open", "closed", "false_alarm", "acknowledged")


def episode_key(incident: Incident) -> tuple[str, str]:
    """What makes repeats "the same": the camera and the rule (kind and zone for records without a rule)."""
    return incident.camera, incident.rule or f"{incident.kind}/{incident.zone or ''}"


@dataclass(frozen=True, slots=True)
class Episode:
    """Consecutive incidents of one key, oldest first; each opened within the gap after the previous ones ended."""

    incidents: tuple[Incident, ...]

    @property
    def id(self) -> str:
        """Its first incident's id: stable while later repeats join."""
        return self.incidents[0].id

    @property
    def first(self) -> Incident:
        """The incident that started it."""
        return self.incidents[0]

    @property
    def opened_ts(self) -> float:
        """When its first incident opened."""
        return self.incidents[0].opened_ts

    @property
    def latest_ts(self) -> float:
        """When its newest incident opened (episodes are listed newest first by this)."""
        return self.incidents[-1].opened_ts

    @property
    def closed_ts(self) -> float | None:
        """When its last incident closed; None while any of them is still going on."""
        return _end(self.incidents)

    @property
    def peak_count(self) -> int:
        """The highest count any of its incidents reached."""
        return max(i.peak_count for i in self.incidents)

    @property
    def status(self) -> str:
        """The most urgent status among its incidents (open before unreviewed before reviewed)."""
        return min((i.status for i in self.incidents), key=_urgency)

    @property
    def reviewed(self) -> bool:
        """Only when every incident in it is reviewed (acknowledged or a false alarm)."""
        return all(i.status in REVIEWED for i in self.incidents)


def _urgency(status: str) -> int:
    return _URGENCY.index(status) if status in _URGENCY else 0  # an unknown status asks for a look


def _end(incidents: Iterable[Incident]) -> float | None:
    ends = [i.closed_ts for i in incidents]
    return None if any(e is None for e in ends) else max(e for e in ends if e is not None)


def group_episodes(incidents: Iterable[Incident], gap_s: float) -> list[Episode]:
    """Every incident in exactly one episode; episodes newest first (by their newest incident), incidents in
    each oldest first. An incident joins its key's current episode when it opened at most ``gap_s`` after
    that episode ended (or while it still goes on); ``gap_s`` 0 groups nothing."""
    by_key: dict[tuple[str, str], list[Incident]] = {}
    for incident in sorted(incidents, key=lambda i: (i.opened_ts, i.id)):
        by_key.setdefault(episode_key(incident), []).append(incident)
    episodes: list[Episode] = []
    for members in by_key.values():
        current: list[Incident] = []
        end: float | None = None
        for incident in members:
            joins = bool(current) and gap_s > 0 and (end is None or incident.opened_ts - end <= gap_s)
            if current and not joins:
                episodes.append(Episode(tuple(current)))
                current = []
            current.append(incident)
            end = _end(current)
        if current:
            episodes.append(Episode(tuple(current)))
    episodes.sort(key=lambda e: (e.latest_ts, e.incidents[-1].id), reverse=True)
    return episodes


def complete(wanted: list[Episode], read: list[Episode], scanned_to: float, gap_s: float, horizon_s: float) -> bool:
    """Whether incidents not read yet (all opened before ``scanned_to``) can no longer join
    any ``wanted`` episode, given every episode ``read`` so far: an older episode of its key was read (repeats
    of one rule do not overlap, so nothing older reaches past it), or it started more than ``gap_s + horizon_s``
    after ``scanned_to`` (``horizon_s``: the longest an earlier incident is assumed to have lasted)."""
    if gap_s <= 0:
        return True
    oldest: dict[tuple[str, str], float] = {}
    for episode in read:
        key = episode_key(episode.first)
        oldest[key] = min(oldest.get(key, episode.opened_ts), episode.opened_ts)
    return all(
        e.opened_ts > oldest[episode_key(e.first)] or e.opened_ts - gap_s - horizon_s > scanned_to for e in wanted
    )
