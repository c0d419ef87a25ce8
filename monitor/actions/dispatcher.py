"""The dispatcher: turns what the rules decided into side effects, off the detection loop.

The engine's loop only calls ``submit`` (a queue put that never blocks). One dispatcher thread then, per rule
output: numbers the incident's change and writes it to the durable outbox (delivered to Redis by
``store.outbox.Delivery``), writes the annotated snapshot, asks the camera's recorder for the clip, queues
the announcement on the speakers and sends notifications. Results that arrive later (a playback, a clip)
come back through the same queue, so one thread owns the incidents and their change numbers.

Nothing here waits for Redis: announcements play whether or not it is reachable, and their results and
clip paths reach the record when it returns. A full disk stops snapshots and clips (``clip_error:
disk_full``) but never the incident records.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from monitor.actions.announce import Announcer
from monitor.actions.notify import Notifier
from monitor.actions.snapshot import annotate, write_jpeg
from monitor.analyze.zones import Polygon
from monitor.clock import Clock
from monitor.incident import AnnouncementResult, ChangeKind, Incident, iso, new_incident_id
from monitor.ingest.clips import ClipRequest, ClipResult
from monitor.rules.policy import Decision
from monitor.store.outbox import Outbox
from monitor.types import Frame, Observation, PlaybackResult, Transition

log = logging.getLogger(__name__)

CLOSED_KEPT_S = 600.0  # a closed incident stays in memory this long for late clip and playback results


class ClipSource(Protocol):
    """A camera's recorder: cuts a clip from its packet ring (and what arrives next) without blocking."""

    def request_clip(self, request: ClipRequest) -> None:
        """Queue a clip; ``request.on_done`` is called from the recorder's thread."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """The frame that made the rule fire and what was seen on it: for the annotated snapshot."""

    frame: Frame
    observation: Observation
    zones: Mapping[str, Polygon]
    zone: str | None


@dataclass(frozen=True, slots=True)
class Speech:
    """What a rule plays when its policy says so."""

    audio: Path
    speakers: tuple[str, ...]
    priority: int = 0
    chime: Path | None = None


@dataclass(frozen=True, slots=True)
class RuleOutput:
    """One rule step with what the dispatcher needs to act on it (everything plain data or a handle)."""

    rule_id: str
    kind: str
    camera: str
    zone: str | None
    transitions: tuple[Transition, ...]
    decision: Decision | None = None
    speech: Speech | None = None
    evidence: Evidence | None = None
    recorder: ClipSource | None = None


@dataclass(frozen=True, slots=True)
class CloseRule:
    """Close the rule's open incident, if any (engine stop, rule or camera removed)."""

    rule_id: str
    ts: float
    closed_by: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Adopt:
    """Carry on an incident recovered from the outbox (resumed after a restart)."""

    incident: Incident
    note: str


@dataclass(frozen=True, slots=True)
class Finish:
    """Close an incident recovered from the outbox whose situation cannot be known any more."""

    incident: Incident
    ts: float
    closed_by: str
    reason: str


@dataclass(frozen=True, slots=True)
class MediaLost:
    """Say on an incident why it has no clip (e.g. the engine stopped before or while writing it)."""

    incident_id: str
    clip_error: str


@dataclass(frozen=True, slots=True)
class _Played:
    incident_id: str
    result: PlaybackResult


@dataclass(frozen=True, slots=True)
class _Clipped:
    incident_id: str
    result: ClipResult


@dataclass(frozen=True, slots=True)
class _Barrier:
    reached: threading.Event


Message = RuleOutput | CloseRule | Adopt | Finish | MediaLost | _Played | _Clipped | _Barrier


@dataclass
class _Tracked:
    incident: Incident
    closed_at: float | None = None  # monotonic time it closed (evicted CLOSED_KEPT_S later)


class Dispatcher:
    """Owns the incidents this engine has open and every side effect of their changes.

    Its incident maps are touched only by its own thread; other threads talk to it through ``submit``.
    """

    def __init__(
        self,
        outbox: Outbox,
        data_dir: Path,
        clock: Clock,
        *,
        pre_roll_s: float,
        post_roll_s: float,
        media_problem: Callable[[], str | None] = lambda: None,
        notifier: Notifier | None = None,
        on_opened: Callable[[str], None] | None = None,
        on_played: Callable[[PlaybackResult], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.data_dir = data_dir
        self.clock = clock
        self.pre_roll_s = pre_roll_s
        self.post_roll_s = post_roll_s
        self.media_problem = media_problem  # e.g. "disk_full: 40 MB free ..." while media must not be written
        self.notifier = notifier
        self.announcer: Announcer | None = None  # replaced when the speakers change (hot reload)
        self.on_opened = on_opened
        self.on_played = on_played
        self.failures = 0  # messages whose handling raised (logged with their traceback)
        self._queue: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        self._by_rule: dict[str, str] = {}  # rule id -> its open incident's id
        self._incidents: dict[str, _Tracked] = {}
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)

    # -- the loop's side -------------------------------------------------------------------------
    def submit(self, message: Message) -> None:
        """Hand over a rule output or a command; never blocks, never raises."""
        self._queue.put(message)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Dispatcher:
        """Start the dispatcher thread."""
        self._thread.start()
        return self

    def wait_handled(self, timeout: float) -> bool:
        """Wait until every message submitted before this call was handled (its changes are in the outbox);
        False after ``timeout``. A clustered node hands a camera over only after this (monitor/cluster/)."""
        reached = threading.Event()
        self.submit(_Barrier(reached))
        return reached.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Handle what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (message := self._queue.get()) is not None:
            try:
                self._handle(message)
            except Exception:  # one bad message must never stop the incident pipeline
                self.failures += 1
                log.exception("dispatcher: %s failed", type(message).__name__)
            self._evict()

    def _handle(self, message: Message) -> None:
        if isinstance(message, RuleOutput):
            self._rule_output(message)
        elif isinstance(message, CloseRule):
            incident_id = self._by_rule.get(message.rule_id)
            if incident_id is not None:
                details = {"reason": message.reason} if message.reason else {}
                self._close(incident_id, message.ts, 0, message.closed_by, details)
        elif isinstance(message, Adopt):
            self._track(message.incident)
            self._change(message.incident.id, "timeline", entry={"at": self._now_iso(), "event": message.note})
        elif isinstance(message, Finish):
            self._track(message.incident)
            self._close(message.incident.id, message.ts, 0, message.closed_by, {"reason": message.reason})
        elif isinstance(message, MediaLost):
            self._change(message.incident_id, "media", details={"clip_error": message.clip_error})
        elif isinstance(message, _Played):
            self._played(message.incident_id, message.result)
        elif isinstance(message, _Barrier):
            message.reached.set()
        else:
            self._clipped(message.incident_id, message.result)

    # -- rule outputs ----------------------------------------------------------------------------
    def _rule_output(self, out: RuleOutput) -> None:
        for transition in out.transitions:
            if transition.kind == "opened":
                self._open(out, transition)
                continue
            incident_id = self._by_rule.get(out.rule_id)
            if incident_id is None:
                continue
            if transition.kind == "peak":
                self._change(incident_id, "peak", peak=transition.peak)
            else:
                details = dict(transition.details)
                if transition.reason:
                    details.setdefault("reason", transition.reason)
                self._close(incident_id, transition.ts, transition.peak, "rule", details)
        incident_id = self._by_rule.get(out.rule_id)
        if incident_id is not None and out.decision is not None:
            self._decide(incident_id, out.decision, out.speech)

    def _open(self, out: RuleOutput, transition: Transition) -> None:
        previous = self._by_rule.get(out.rule_id)
        if previous is not None:  # cannot happen with a sane rule; never leave one open beside a new one
            self._close(previous, transition.ts, 0, "superseded", {})
        opened = transition.since or transition.ts
        details = {**transition.details}
        if out.kind == "camera_offline":
            details["detected_at"] = iso(transition.ts)
        incident, change = Incident(
            id=new_incident_id(opened),
            kind=out.kind,
            rule=out.rule_id,
            camera=out.camera,
            zone=out.zone,
            opened_ts=opened,
            peak_count=transition.count,
            opened_count=transition.count,
            details=details,
        ).opening()
        self._track(incident)
        self.outbox.put(change, incident)
        what = "camera offline" if out.kind == "camera_offline" else f"{transition.count} people"
        log.warning("INCIDENT %s opened: %s on %s, %s", incident.id, out.kind, out.camera, what)
        if self.on_opened is not None:
            self.on_opened(out.kind)
        if out.evidence is not None:
            self._snapshot(incident.id, out, out.evidence)
        if out.recorder is not None:
            self._clip(incident.id, out.recorder, transition.ts)
        self._notify(incident.id, "opened")  # targets choose kinds (notify[].kinds); camera_offline included

    def _decide(self, incident_id: str, decision: Decision, speech: Speech | None) -> None:
        if decision.notable:
            self._change(
                incident_id, "timeline", entry={"at": self._now_iso(), "event": "announcement_decision",
                                                "reason": decision.reason}
            )  # fmt: skip
        if decision.escalate:
            log.warning("INCIDENT %s needs attention: %s", incident_id, decision.reason)
            self._change(incident_id, "escalated", at=self._now_iso(), reason=decision.reason)
        if decision.play and speech is not None:
            announcer = self.announcer
            if announcer is None:
                return
            announcer.announce(
                speech.audio,
                list(speech.speakers),
                lambda result: self.submit(_Played(incident_id, result)),
                priority=speech.priority,
                chime=speech.chime,
            )

    def _close(self, incident_id: str, ts: float, peak: int, closed_by: str, details: dict[str, Any]) -> None:
        tracked = self._incidents.get(incident_id)
        if tracked is None or not tracked.incident.is_open:
            return
        self._change(incident_id, "closed", ts=ts, peak=peak, closed_by=closed_by, details=details)
        tracked.closed_at = time.monotonic()
        rule = tracked.incident.rule
        if self._by_rule.get(rule) == incident_id:
            del self._by_rule[rule]
        log.warning("INCIDENT %s closed (%s, peak %d)", incident_id, closed_by, tracked.incident.peak_count)
        self._notify(incident_id, "closed")

    # -- media and results -----------------------------------------------------------------------
    def _snapshot(self, incident_id: str, out: RuleOutput, evidence: Evidence) -> None:
        problem = self.media_problem()
        if problem is not None:
            self._change(incident_id, "media", details={"snapshot_error": problem})
            return
        frame, obs = evidence.frame, evidence.observation
        shown = {evidence.zone: evidence.zones[evidence.zone]} if evidence.zone else dict(evidence.zones)
        members = obs.zones[evidence.zone].members if evidence.zone else tuple(range(len(obs.detections)))
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(frame.ts))
        caption = f"{out.camera}  {out.kind}  {len(members)} people  {when}"
        image = annotate(frame.image, obs.detections, shown, members, caption, scale=frame.scale)
        try:
            path = write_jpeg(self.data_dir / "snapshots" / f"{incident_id}.jpg", image)
        except OSError as exc:
            self._change(incident_id, "media", details={"snapshot_error": f"{type(exc).__name__}: {exc}"})
            return
        self._change(incident_id, "media", snapshot=str(path))

    def _clip(self, incident_id: str, recorder: ClipSource, ts: float) -> None:
        problem = self.media_problem()
        if problem is not None:
            log.error("incident %s: no clip: %s", incident_id, problem)
            self._change(incident_id, "media", details={"clip_error": problem})
            return
        path = self.data_dir / "clips" / f"{incident_id}.mp4"
        request = ClipRequest(
            path, ts - self.pre_roll_s, ts + self.post_roll_s, lambda result: self.submit(_Clipped(incident_id, result))
        )
        recorder.request_clip(request)

    def _clipped(self, incident_id: str, result: ClipResult) -> None:
        if result.path is None:
            log.error("incident %s: no clip: %s", incident_id, result.error)
            self._change(incident_id, "media", details={"clip_error": result.error})
            return
        self._change(
            incident_id,
            "media",
            clip=str(result.path),
            details={"clip_start": iso(result.start_ts), "clip_end": iso(result.end_ts)},
        )

    def _played(self, incident_id: str, result: PlaybackResult) -> None:
        self._change(incident_id, "announcement", result=AnnouncementResult.of(result).to_record())
        if self.on_played is not None:
            self.on_played(result)

    # -- bookkeeping -----------------------------------------------------------------------------
    def _track(self, incident: Incident) -> None:
        self._incidents[incident.id] = _Tracked(incident)
        if incident.is_open:
            self._by_rule[incident.rule] = incident.id

    def _change(self, incident_id: str, kind: ChangeKind, **data: Any) -> None:
        tracked = self._incidents.get(incident_id)
        if tracked is None:
            log.error("incident %s: %s change for an incident this engine no longer holds: dropped", incident_id, kind)
            return
        tracked.incident, change = tracked.incident.change(kind, **data)
        self.outbox.put(change, tracked.incident)

    def _notify(self, incident_id: str, event: Literal["opened", "closed"]) -> None:
        if self.notifier is not None:
            self.notifier.notify(self._incidents[incident_id].incident, event)

    def _evict(self) -> None:
        """Forget closed incidents once late results can no longer come (bounded memory over weeks)."""
        cutoff = time.monotonic() - CLOSED_KEPT_S
        for incident_id in [i for i, t in self._incidents.items() if t.closed_at is not None and t.closed_at < cutoff]:
            del self._incidents[incident_id]

    def _now_iso(self) -> str | None:
        return iso(self.clock.now())
