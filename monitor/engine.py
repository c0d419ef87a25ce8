"""The running engine: stream workers -> batched detection -> zones -> rules -> actions.

One detection loop serves all cameras: it takes the newest sampled frame of each camera, runs
the model once per batch, and hands each result to the pure analytics and rule state machines.
Side effects (Redis, JPEG, clips, speakers) are small calls whose slow parts run on other threads.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any, Literal

from detectors import Detector, DetectorConfig, create_detector
from monitor.actions.announce import Announcer
from monitor.actions.notify import Notifier
from monitor.actions.snapshot import annotate, write_jpeg
from monitor.analyze.filters import count_zones_filtered
from monitor.analyze.motion import changed, thumbnail
from monitor.camera import RING_MARGIN_S, ActiveRule, CameraRuntime, make_workers
from monitor.config import CameraConfig, LoadedConfig
from monitor.config_watch import ConfigWatcher
from monitor.ingest.clips import ClipRequest, ClipResult
from monitor.reload import plan_reload
from monitor.rules.models import GatheringRuleConfig, RuleConfig
from monitor.rules.offline import OfflineState
from monitor.rules.policy import Decision
from monitor.rules.runtime import RuleStep, Transition, build_runtime
from monitor.status import StatusReporter
from monitor.store.embedded import EmbeddedRedis, connect
from monitor.store.incidents import IncidentStore, iso
from monitor.store.retention import RetentionWorker
from monitor.types import Detections, Frame, Observation, PlaybackResult
from monitor.web.metrics import EngineMetrics
from speakers.health import HealthMonitor

log = logging.getLogger(__name__)

STALL_S = 2.0  # no frame for this long = not receiving (the offline grace period then applies)
HEALTH_INTERVAL_S = 0.5


class Engine:
    """Owns every stage for one config; ``run`` blocks until stopped or the duration is over."""

    def __init__(
        self, loaded: LoadedConfig, detector: Detector | None = None, metrics: EngineMetrics | None = None
    ) -> None:
        self.loaded = loaded
        cfg = loaded.config
        self.data_dir = loaded.data_dir
        self.stop_event = threading.Event()
        self.embedded: EmbeddedRedis | None = None
        self._detector = detector  # given: used for every camera (tests); else built from the config
        self.metrics = metrics
        self._detectors: dict[DetectorConfig, Detector] = {}
        self.cameras = {name: self._build_camera(name) for name in cfg.cameras}
        self._watcher = ConfigWatcher(loaded)
        self.store: IncidentStore | None = None
        self.announcer: Announcer | None = None
        self.speaker_health: HealthMonitor | None = None
        self.notifier: Notifier | None = None
        self.retention: RetentionWorker | None = None
        self.status: StatusReporter | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Connect Redis, load the detector, start speakers and stream workers."""
        cfg = self.loaded.config
        client, self.embedded = connect(cfg.redis_url, self.data_dir)
        self.store = IncidentStore(client)
        self.status = StatusReporter(self.store, self.data_dir, ttl_s=int(cfg.status_interval_s * 4))
        self.notifier = Notifier(cfg.notify) if cfg.notify else None
        self.retention = RetentionWorker(self.store, cfg.retention, media_root=self.data_dir)
        self.retention.start()
        self._start_speakers()
        for cam in self.cameras.values():
            self._start_camera(cam)

    def _build_camera(self, name: str) -> CameraRuntime:
        cfg = self.loaded.config
        ring_s = cfg.clips.pre_roll_s + cfg.clips.post_roll_s + RING_MARGIN_S
        cam = CameraRuntime(name, cfg.cameras[name], *make_workers(self.loaded, name, ring_s))
        cam.rules = [ActiveRule(build_runtime(rule)) for rule in cfg.rules if rule.camera == name]
        return cam

    def _start_camera(self, cam: CameraRuntime) -> None:
        """Give the camera its model (one instance per distinct setting, shared) and start reading."""
        settings = self.loaded.detector_for(cam.name)
        if settings not in self._detectors:
            self._detectors[settings] = self._detector or create_detector(settings, self.loaded.base_dir)
            log.info("detector: %s", self._detectors[settings].describe())
        cam.detector = self._detectors[settings]
        cam.offline = OfflineState(cam.config.offline_after_s, time.time())
        for worker in {id(w): w for w in (cam.worker, cam.recorder)}.values():
            worker.start()

    def _stop_camera(self, cam: CameraRuntime, reason: str, wait: bool = True) -> None:
        """Stop reading (finishing clips) and close the camera's open incidents."""
        for worker in {id(w): w for w in (cam.worker, cam.recorder)}.values():
            if wait:
                worker.stop()
            else:  # a hung stream may take its read timeout to stop: never hold up the other cameras
                threading.Thread(target=worker.stop, name=f"stop-{cam.name}", daemon=True).start()
        for active in cam.rules:
            self._close_rule(active, reason)
        if cam.offline_incident and self.store is not None:
            self.store.close(cam.offline_incident, time.time(), 0, reason=reason)
            cam.offline_incident = None

    def _close_rule(self, active: ActiveRule, reason: str) -> None:
        if active.incident_id and self.store is not None:
            self.store.close(active.incident_id, time.time(), 0, reason=reason)  # peak as recorded so far
            active.incident_id = None

    def _start_speakers(self) -> None:
        cfg = self.loaded.config
        self.announcer = Announcer(dict(cfg.speakers), groups=cfg.speaker_groups)
        speakers = {name: channel.speaker for name, channel in self.announcer.channels.items()}
        self.speaker_health = HealthMonitor(speakers, cfg.speaker_health_interval_s).start()

    def _stop_speakers(self, wait: bool = True) -> None:
        health, announcer = self.speaker_health, self.announcer
        if health is not None:
            health.close()
        if announcer is not None:
            if wait:
                announcer.close()
            else:  # queued announcements finish in the background
                threading.Thread(target=announcer.close, name="old-speakers", daemon=True).start()

    def stop(self) -> None:
        """Stop reading, finish clips and announcements, close open incidents, flush Redis."""
        self.stop_event.set()
        if self.retention is not None:
            self.retention.stop()
        self._stop_speakers()
        for cam in self.cameras.values():
            self._stop_camera(cam, "engine_stop")
        if self.notifier is not None:
            self.notifier.close(10)
        if self.embedded is not None:
            self.embedded.stop()

    def run(self, duration_s: float | None = None, started: bool = False) -> None:
        """Start (unless ``started``), detect until stopped (or ``duration_s`` passed), then stop cleanly."""
        if not started:
            self.start()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        next_status = time.monotonic() + self.loaded.config.status_interval_s
        next_health = time.monotonic()
        try:
            while not self.stop_event.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if not self.detect_once():
                    self.stop_event.wait(0.01)
                if time.monotonic() >= next_health:
                    self.check_health(time.time())
                    self.tick_rules(time.time())
                    self.reload_if_changed()
                    next_health += HEALTH_INTERVAL_S
                if time.monotonic() >= next_status:
                    self.report_status()
                    next_status += self.loaded.config.status_interval_s
        finally:
            self.stop()

    # -- hot reload ----------------------------------------------------------------------------
    def reload_if_changed(self) -> bool:
        """Apply streams.yaml when it was saved since; an invalid file is logged and the running config stays."""
        new = self._watcher.poll()
        if new is None:
            return False
        self.apply_config(new)
        return True

    def apply_config(self, new: LoadedConfig) -> None:
        """Start new cameras, stop removed ones, restart changed inputs; untouched cameras keep running."""
        plan = plan_reload(self.loaded, new, self.cameras)
        self.loaded = new
        if plan.needs_restart:
            log.warning("config reload: %s changed; that takes effect after a restart", ", ".join(plan.needs_restart))
        if plan.speakers_changed:
            self._stop_speakers(wait=False)
            self._start_speakers()
            log.info("config reload: speakers updated")
        for name in plan.remove:
            self._stop_camera(self.cameras.pop(name), "camera_removed", wait=False)
            log.info("config reload: camera %s removed", name)
        for name in plan.restart:
            self._stop_camera(self.cameras[name], "config_changed", wait=False)
            log.info("config reload: camera %s restarts (its input or detector changed)", name)
        for name in plan.add + plan.restart:
            self.cameras[name] = cam = self._build_camera(name)
            self._start_camera(cam)
            if name in plan.add:
                log.info("config reload: camera %s added", name)
        for name in plan.update:
            self._update_camera(self.cameras[name], new.config.cameras[name], new)

    def _update_camera(self, cam: CameraRuntime, cam_cfg: CameraConfig, new: LoadedConfig) -> None:
        """Zones, speakers and rules change in place: the stream is not touched."""
        if cam.config != cam_cfg:
            cam.config, cam.polygon_size = cam_cfg, None  # polygons and filters are rebuilt on the next frame
            log.info("config reload: camera %s updated (zones, speakers)", cam.name)
        wanted = [rule for rule in new.config.rules if rule.camera == cam.name]
        kept = [active for active in cam.rules if active.config in wanted]
        for active in cam.rules:
            if active not in kept:
                self._close_rule(active, "rule_changed")
        have = [active.config for active in kept]
        cam.rules = kept + [ActiveRule(build_runtime(rule)) for rule in wanted if rule not in have]

    # -- the detection loop --------------------------------------------------------------------
    def detect_once(self) -> bool:
        """Run each model once on every camera's newest unseen frame; False when there was none.

        A frame that waited longer than ``max(1 s, 2 detection intervals)`` is skipped, not queued:
        under overload detection stays current and the skips are counted as dropped.
        """
        now = time.monotonic()
        batch: list[tuple[CameraRuntime, Frame]] = []
        for cam in self.cameras.values():
            frame = cam.worker.latest()
            if frame is None or frame.seq <= cam.last_seq:
                continue
            skipped = max(0, frame.seq - cam.last_seq - 1) if cam.last_seq else 0
            cam.last_seq = frame.seq
            if now - frame.arrived > max(1.0, 2.0 / cam.config.detect_fps):
                skipped += 1
            elif cam.config.motion_gate and cam.last is not None and not self._moved(cam, frame):
                self.observe(cam, frame, cam.last.detections, reuse=True)
                continue
            else:
                batch.append((cam, frame))
            if skipped:
                cam.dropped += skipped
                if self.metrics is not None:
                    self.metrics.dropped(cam.name, skipped)
        by_detector: dict[int, list[tuple[CameraRuntime, Frame]]] = {}
        for cam, frame in batch:
            by_detector.setdefault(id(cam.detector), []).append((cam, frame))
        for group in by_detector.values():
            detector = group[0][0].detector
            assert detector is not None
            t0 = time.monotonic()
            results = detector.detect([frame.image for _, frame in group])  # one batched call per model
            if self.metrics is not None:
                self.metrics.inference(time.monotonic() - t0)
            for (cam, frame), detections in zip(group, results, strict=True):
                cam.detect_times.append(time.monotonic())
                cam.detections += 1
                if self.metrics is not None:
                    self.metrics.detection(cam.name, time.monotonic() - frame.arrived)
                self.observe(cam, frame, detections.scaled(1 / frame.scale))
        return bool(batch)

    def _moved(self, cam: CameraRuntime, frame: Frame) -> bool:
        thumb = thumbnail(frame.image)
        if changed(cam.motion_thumb, thumb):
            cam.motion_thumb = thumb
            return True
        return False

    def observe(self, cam: CameraRuntime, frame: Frame, detections: Detections, reuse: bool = False) -> None:
        """Track, count zones, advance the camera's rules and act on what they decide.

        ``reuse``: the motion gate kept the previous detections (already tracked) for this frame.
        """
        if not reuse:
            detections = cam.tracker.update(frame.ts, detections)
        polygons = cam.zone_polygons(frame.size)
        zones = count_zones_filtered(detections, polygons, cam.filters)
        obs = Observation(cam.name, frame.ts, detections, zones)
        cam.last, cam.last_frame = obs, frame
        for active in cam.rules:
            self.act(cam, active, active.runtime.step(obs, polygons), frame, obs)

    def tick_rules(self, now: float) -> None:
        """Advance schedules, repeats and escalations even for cameras that send nothing."""
        for cam in self.cameras.values():
            for active in cam.rules:
                self.act(cam, active, active.runtime.tick(now), cam.last_frame, cam.last)

    def act(
        self, cam: CameraRuntime, active: ActiveRule, step: RuleStep, frame: Frame | None, obs: Observation | None
    ) -> None:
        """Turn a rule step into incident records, a snapshot, a clip, announcements and notifications."""
        assert self.store is not None
        for transition in step.transitions:
            if transition.kind == "opened":
                self._open(cam, active, transition, frame, obs)
            elif active.incident_id is None:
                continue
            elif transition.kind == "peak":
                self.store.set_peak(active.incident_id, transition.peak)
            else:
                log.warning("INCIDENT %s closed (peak %d)", active.incident_id, transition.peak)
                incident_id = active.incident_id
                self.store.close(incident_id, transition.ts, transition.peak, details=transition.details)
                active.incident_id = None
                self._notify(incident_id, "closed")
        if active.incident_id is not None:
            self._apply_decision(cam, active, step.decision)

    def _open(
        self,
        cam: CameraRuntime,
        active: ActiveRule,
        transition: Transition,
        frame: Frame | None,
        obs: Observation | None,
    ) -> None:
        assert self.store is not None
        rule = active.config
        details = {
            "threshold": rule.min_people if isinstance(rule, GatheringRuleConfig) else rule.min_staff,
            **transition.details,
        }
        record = self.store.open(
            kind=active.runtime.incident_kind,
            rule=rule.rule_id,
            camera=cam.name,
            zone=rule.zone,
            ts=transition.since or transition.ts,
            count=transition.count,
            details=details,
        )
        incident_id = active.incident_id = record["id"]
        log.warning("INCIDENT %s opened: %s on %s, %d people", incident_id, record["kind"], cam.name, transition.count)
        if self.metrics is not None:
            self.metrics.incident_opened(record["kind"])
        if frame is not None and obs is not None:
            self._snapshot(incident_id, cam, rule, frame, obs)
        self._clip(incident_id, cam, transition.ts)
        self._notify(incident_id, "opened")

    def _apply_decision(self, cam: CameraRuntime, active: ActiveRule, decision: Decision) -> None:
        """Play, note a suppression, or escalate, as the rule's announcement policy decided."""
        assert self.store is not None and active.incident_id is not None
        rule, incident_id = active.config, active.incident_id
        if decision.notable:
            entry = {"at": iso(time.time()), "event": "announcement_decision", "reason": decision.reason}
            self.store.update(incident_id, lambda rec: rec.setdefault("timeline", []).append(entry))
        if decision.escalate:
            log.warning("INCIDENT %s needs attention: %s", incident_id, decision.reason)
            self.store.update(incident_id, lambda rec: rec.update(needs_attention=True), "incident_escalated")
        if decision.play and rule.announcement:
            speakers = rule.speakers if rule.speakers is not None else cam.config.speakers
            assert self.announcer is not None
            self.announcer.announce(
                self.loaded.resolve(rule.announcement),
                speakers,
                functools.partial(self._record_playback, incident_id),
                priority=rule.priority,
                chime=self.loaded.resolve(rule.chime) if rule.chime else None,
            )

    def _notify(self, incident_id: str, event: Literal["opened", "closed"]) -> None:
        if self.notifier is None or self.store is None:
            return
        record = self.store.get(incident_id)
        if record is not None:
            self.notifier.notify(record, event)

    def _snapshot(self, incident_id: str, cam: CameraRuntime, rule: RuleConfig, frame: Frame, obs: Observation) -> None:
        zones = cam.zone_polygons(frame.size)
        shown = {rule.zone: zones[rule.zone]} if rule.zone else zones
        members = obs.zones[rule.zone].members if rule.zone else tuple(range(len(obs.detections)))
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(frame.ts))
        caption = f"{cam.name}  {rule.kind}  {len(members)} people  {when}"
        image = annotate(frame.image, obs.detections, shown, members, caption, scale=frame.scale)
        path = write_jpeg(self.data_dir / "snapshots" / f"{incident_id}.jpg", image)
        assert self.store is not None
        self.store.set_media(incident_id, snapshot=str(path))

    def _clip(self, incident_id: str, cam: CameraRuntime, ts: float) -> None:
        clips = self.loaded.config.clips
        path = self.data_dir / "clips" / f"{incident_id}.mp4"

        def done(result: ClipResult) -> None:
            assert self.store is not None
            if result.path is None:
                log.error("incident %s: no clip: %s", incident_id, result.error)
                self.store.update(incident_id, lambda rec: rec["details"].update(clip_error=result.error))
                return

            def record(rec: dict[str, Any]) -> None:
                rec["clip"] = str(result.path)
                rec["details"].update(clip_start=iso(result.start_ts), clip_end=iso(result.end_ts))

            self.store.update(incident_id, record, "incident_media")

        cam.recorder.request_clip(ClipRequest(path, ts - clips.pre_roll_s, ts + clips.post_roll_s, done))

    def _record_playback(self, incident_id: str, result: PlaybackResult) -> None:
        assert self.store is not None
        self.store.add_announcement(incident_id, result)
        if self.metrics is not None:
            self.metrics.announcement(result.speaker, result.ok, result.ended_at - result.started_at)

    def check_health(self, now: float) -> None:
        """Open a camera_offline incident for a camera without frames past its grace period; close it on return."""
        assert self.store is not None
        for cam in self.cameras.values():
            if cam.offline is None:
                continue
            st = cam.worker.status()
            receiving = st.online and st.last_arrival is not None and now - st.last_arrival < STALL_S
            for event in cam.offline.update(now, receiving, st.last_arrival):
                if event.transition == "opened":
                    record = self.store.open(
                        kind="camera_offline",
                        rule=f"camera_offline/{cam.name}",
                        camera=cam.name,
                        zone=None,
                        ts=event.since,
                        count=0,
                        details={"last_error": st.last_error, "detected_at": iso(now)},
                    )
                    cam.offline_incident = record["id"]
                    if self.metrics is not None:
                        self.metrics.incident_opened("camera_offline")
                    log.warning("INCIDENT %s opened: camera %s offline (%s)", record["id"], cam.name, st.last_error)
                elif cam.offline_incident is not None:
                    log.warning("INCIDENT %s closed: camera %s back online", cam.offline_incident, cam.name)
                    self.store.close(cam.offline_incident, now, 0)
                    cam.offline_incident = None

    # -- status ----------------------------------------------------------------------------------
    def report_status(self) -> None:
        """One console line per camera and speaker health changes; the same in Redis for other machines."""
        if self.status is not None:
            self.status.report(self.cameras.values(), self.speaker_health)
