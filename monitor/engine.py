"""The running engine: its lifecycle and the detection loop; every side effect happens elsewhere.

One detection loop serves all cameras: it takes the newest sampled frame of each camera, runs the model once per
batch, and hands each result to the pure analytics and rule runtimes. What the rules decide goes to the
dispatcher (monitor/actions/dispatcher.py) as plain data: the loop never waits for Redis, the disk, a speaker or
a notification, and never dies from them. Incident changes go through a durable outbox (monitor/store/outbox.py)
to Redis; status is published by its own thread (monitor/status.py).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from detectors import Detector, DetectorConfig, DetectorError, create_detector, resolve_model_path
from monitor.actions.announce import Announcer, never_held
from monitor.actions.broadcaster import Broadcaster
from monitor.actions.dispatcher import (
    Adopt,
    CloseRule,
    Dispatcher,
    Evidence,
    Finish,
    MediaLost,
    RuleOutput,
    Speech,
)
from monitor.actions.notify import Notifier
from monitor.analyze.filters import count_zones_filtered
from monitor.analyze.motion import changed, thumbnail
from monitor.clock import Clock, SystemClock
from monitor.cluster.node import node_data_dir
from monitor.cluster.takeover import HANDOVER_S, LetGo, Ownership, TakeOn
from monitor.config import CameraConfig, LoadedConfig
from monitor.config.broadcasts import runtime_broadcasts
from monitor.config.reload import plan_reload
from monitor.config.watch import ConfigWatcher
from monitor.incident import Incident
from monitor.ingest.taps import PacketTaps
from monitor.ingest.worker import Source
from monitor.rules.runtime import OfflineRuntime, RuleRuntime, RuleStep, build_runtime
from monitor.runtime.calibration import Calibrator, calibration_off, camera_job
from monitor.runtime.camera import RING_MARGIN_S, ActiveRule, CameraRuntime, make_workers
from monitor.runtime.int8_build import AFTER_S as INT8_AFTER_S
from monitor.runtime.int8_build import Int8Builds
from monitor.runtime.recovery import last_announced, plan_recovery
from monitor.runtime.status import StatusReporter
from monitor.store.disk import DiskGuard
from monitor.store.embedded import EmbeddedRedis, store_client
from monitor.store.incidents import IncidentStore
from monitor.store.outbox import OUTBOX_NAME, Delivery, Outbox
from monitor.store.redis_keeper import RedisKeeper
from monitor.store.retention import RetentionWorker
from monitor.store.talks import speaker_held
from monitor.types import Detections, Frame, Observation, PlaybackResult
from monitor.web.metrics import EngineMetrics
from speakers.health import HealthMonitor

log = logging.getLogger(__name__)

STALL_S = 2.0  # no frame for this long = not receiving (the offline grace period then applies)
HEALTH_INTERVAL_S = 0.5
STOP_FLUSH_S = 5.0  # at shutdown, wait this long for the outbox to reach Redis (the rest waits for next start)
SPEAKERS_STOP_S = 10.0  # at shutdown, queued announcements get this long (then they are stopped and recorded)


@dataclass(frozen=True, slots=True)
class EngineHealth:
    """What /healthz and the dashboard show about the engine itself."""

    degraded: bool
    outbox_pending: int
    store_error: str | None
    media_problem: str | None
    dispatcher_failures: int
    fenced: int = 0  # incident changes the store refused: a newer owner had the camera (clustered; not degraded)
    detector_problem: str | None = None  # the last detection call failed (e.g. every Triton server down)

    def to_json(self) -> dict[str, object]:
        """Plain values for the page."""
        return {
            "degraded": self.degraded,
            "outbox_pending": self.outbox_pending,
            "store_error": self.store_error,
            "media_problem": self.media_problem,
            "dispatcher_failures": self.dispatcher_failures,
            "fenced": self.fenced,
            "detector_problem": self.detector_problem,
        }


class Engine:
    """Owns every stage for one config; ``run`` blocks until stopped or the duration is over."""

    def __init__(
        self,
        loaded: LoadedConfig,
        detector: Detector | None = None,
        metrics: EngineMetrics | None = None,
        clock: Clock | None = None,
        node: str | None = None,
        int8_after_s: float = INT8_AFTER_S,
    ) -> None:
        self.loaded = loaded
        self.node = node or socket.gethostname()  # its name in the cluster (``cluster:``)
        self.ownership: Ownership | None = None  # clustered: which cameras this node runs (monitor/cluster/)
        clustered = loaded.config.cluster is not None  # then cameras start as this node wins them
        self.data_dir = node_data_dir(loaded.data_dir, self.node) if clustered else loaded.data_dir
        self.clock: Clock = clock or SystemClock()
        self.stop_event = threading.Event()
        self.frame_ready = threading.Event()  # set by the cameras' workers on each new frame: the loop waits on it
        self.redis_keeper: RedisKeeper | None = None  # runs (and stops) the embedded Redis, when that is the store
        self._detector = detector  # given: used for every camera (tests); else built from the config
        self.metrics = metrics
        self._detector_problem: str | None = None  # the last detection call's error, until one succeeds
        self._detectors: dict[DetectorConfig, Detector] = {}
        self._detectors_lock = threading.Lock()  # the calibrator builds detectors on its own thread
        # cameras without a hand-set size pick their setting from their first minutes (monitor/runtime/calibration.py)
        self.calibrator = Calibrator(self._detector_for, loaded.base_dir)
        # where precision auto would run INT8 and none is built, build it in the background (runtime/int8_build.py)
        self.int8_builds = None if detector is not None else Int8Builds(loaded.path, self.data_dir, int8_after_s)
        self._reopened: queue.SimpleQueue[tuple[Detector, Detector]] = queue.SimpleQueue()  # (old, new)
        self.cameras = {} if clustered else {name: self._build_camera(name) for name in loaded.config.cameras}
        self._watcher = ConfigWatcher(loaded)
        self.disk = DiskGuard(self.data_dir, loaded.config.retention.min_free_mb)
        self.store: IncidentStore | None = None
        self.outbox: Outbox | None = None
        self.delivery: Delivery | None = None
        self.dispatcher: Dispatcher | None = None
        self.announcer: Announcer | None = None
        self.broadcaster: Broadcaster | None = None
        self.speaker_health: HealthMonitor | None = None
        self.notifier: Notifier | None = None
        self.retention: RetentionWorker | None = None
        self.status: StatusReporter | None = None
        self._stopped = False

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Open the outbox, reach for Redis (without waiting for it), recover, start speakers and cameras."""
        cfg = self.loaded.config
        self.outbox = Outbox(self.data_dir / OUTBOX_NAME)
        last_alive = self.outbox.last_alive()  # before the delivery thread writes a new heartbeat
        self.store = IncidentStore(self._connect())
        fenced = self.metrics.change_fenced if self.metrics is not None else None
        self.delivery = Delivery(self.outbox, self.store.apply, self._store_failed, on_fenced=fenced).start()
        self.notifier = Notifier(cfg.notify) if cfg.notify else None
        self.dispatcher = Dispatcher(
            self.outbox,
            self.data_dir,
            self.clock,
            pre_roll_s=cfg.clips.pre_roll_s,
            post_roll_s=cfg.clips.post_roll_s,
            media_problem=self.media_problem,
            notifier=self.notifier,
            on_opened=self.metrics.incident_opened if self.metrics is not None else None,
            on_played=self._played,
        )
        self._start_speakers()
        if cfg.cluster is not None:  # a camera's incidents carry on from the store wherever it runs next
            self._hand_leftovers_to_store()
            self.ownership = Ownership(cfg.cluster, self.node, cfg.cameras, self.store)
            self.store.fence_of = self.outbox.fence_of = self.ownership.token
        else:
            self._recover(last_alive)
        self.dispatcher.start()
        self.broadcaster = Broadcaster(self.clock, self.data_dir, self.store.r, lambda: self.announcer)
        self.broadcaster.start(runtime_broadcasts(cfg.broadcasts, self.loaded.base_dir))
        self.retention = RetentionWorker(self.store, cfg.retention, media_root=self.loaded.data_dir)  # every node's
        self.retention.start()
        ttl_s = int(cfg.status_interval_s * 4)
        if cfg.cluster is not None:  # outlives a dead owner's lease: the next owner reads when it was last alive
            ttl_s = max(ttl_s, 3 * cfg.cluster.lease_ttl_s)
        self.status = StatusReporter(
            self.store,
            self.data_dir,
            ttl_s=ttl_s,
            media_problem=self.media_problem,
            on_store_error=self._store_failed,
            node=self.node if self.ownership is not None else None,
        )
        self.status.start(cfg.status_interval_s, lambda: list(self.cameras.values()), lambda: self.speaker_health)
        for cam in self.cameras.values():
            self._start_camera(cam)
        if self.ownership is not None:
            self.ownership.start()
        if self.int8_builds is not None:
            self.int8_builds.start(self._int8_sizes, self._reopen_detectors)

    def _connect(self) -> redis.Redis:
        """A client for the configured Redis, or the embedded one; an unreachable server is retried later."""
        url = self.loaded.config.redis_url
        if not url:
            embedded = EmbeddedRedis(self.data_dir)
            try:
                url = embedded.start()
            except (RuntimeError, OSError) as exc:  # e.g. a full disk: incidents wait in the outbox
                log.error("embedded Redis did not start: %s (incidents are kept in the outbox)", exc)
                url = embedded.url
            self.redis_keeper = RedisKeeper(embedded)  # starts it again whenever it is down
            self.redis_keeper.start()
        return store_client(url)

    def _store_failed(self, exc: Exception) -> None:
        if self.metrics is not None:
            self.metrics.store_error()

    def _played(self, result: PlaybackResult) -> None:
        if self.metrics is not None:
            self.metrics.announcement(result.speaker, result.ok, result.ended_at - result.started_at)

    def media_problem(self) -> str | None:
        """Why clips and pictures are not written now (free space under ``retention.min_free_mb``), or None.

        Stopping media early leaves room for what matters more: the incident records (outbox, Redis's log).
        """
        return None if self.disk.ok() else self.disk.reason

    def health(self) -> EngineHealth:
        """Degraded while incident changes wait for the store or media cannot be written; failed actions counted."""
        pending = self.outbox.pending() if self.outbox is not None else 0
        store_error = self.delivery.last_error if self.delivery is not None else None
        media = self.media_problem()
        failures = self.dispatcher.failures if self.dispatcher is not None else 0
        fenced = self.delivery.fenced if self.delivery is not None else 0
        detector = self._detector_problem
        degraded = bool(pending or store_error or media or detector)
        return EngineHealth(degraded, pending, store_error, media, failures, fenced, detector)

    def packet_taps(self, camera: str, source: Source) -> PacketTaps | None:
        """The packets of ``camera``'s input ``source`` as its running worker reads them, or None (this engine does
        not run that camera, or reads another input): live viewers take them instead of opening the camera again."""
        cam = self.cameras.get(camera)  # read from the web's threads: one dict lookup, atomic
        if cam is None:
            return None
        for worker in (cam.recorder, cam.worker):
            if worker.source == source and worker.alive:
                return worker.taps
        return None

    def _build_camera(self, name: str) -> CameraRuntime:
        cfg = self.loaded.config
        ring_s = cfg.clips.pre_roll_s + cfg.clips.post_roll_s + RING_MARGIN_S
        cam = CameraRuntime(name, cfg.cameras[name], *make_workers(self.loaded, name, ring_s, self.frame_ready))
        cam.rules = [ActiveRule(build_runtime(rule)) for rule in cfg.rules if rule.camera == name]
        cam.offline = OfflineRuntime(name, cam.config.offline_after_s, self.clock.now())
        return cam

    def _start_camera(self, cam: CameraRuntime) -> None:
        """Give the camera its model (one instance per distinct setting, shared) and start reading."""
        settings = self.loaded.detector_for(cam.name)
        cam.detector = self._detector_for(settings)
        for worker in {id(w): w for w in (cam.worker, cam.recorder)}.values():
            worker.start()
        off = "a test's detector" if self._detector is not None else calibration_off(self.loaded, cam.name)
        if off is None:
            self.calibrator.add(camera_job(self.loaded, cam.name, cam.worker, settings))
        else:
            log.debug("camera %s: no calibration (%s)", cam.name, off)

    def _detector_for(self, settings: DetectorConfig) -> Detector:
        """One detector per distinct setting, shared by the cameras that use it."""
        with self._detectors_lock:
            if settings not in self._detectors:
                self._detectors[settings] = self._detector or create_detector(settings, self.loaded.base_dir)
                log.info("detector: %s", self._detectors[settings].describe())
            return self._detectors[settings]

    def apply_calibrations(self) -> None:
        """Switch calibrated cameras to their chosen detector (built by the calibrator) and input size."""
        while not self.calibrator.results.empty():
            result = self.calibrator.results.get()
            cam = self.cameras.get(result.camera)
            if cam is None or cam.worker is not result.worker:  # stopped or restarted meanwhile
                continue
            cam.calibration = result.record
            if result.detector is not None and result.settings is not None:
                cam.detector = result.detector
                cam.worker.max_side = None if result.settings.tiles else result.settings.imgsz
                log.info("camera %s: detects with %s", cam.name, result.detector.describe())

    def apply_reopened_detectors(self) -> None:
        """Hand the detectors reopened after an INT8 build (on the build thread) to their cameras."""
        while not self._reopened.empty():
            old, new = self._reopened.get()
            for cam in self.cameras.values():
                if cam.detector is old:
                    cam.detector = new
                    log.info("camera %s: detects with %s", cam.name, new.describe())

    def _int8_sizes(self) -> dict[int, list[str]]:
        """Input sizes whose detectors would run INT8 under ``precision: auto`` but have no INT8 model built,
        with the cameras running at each (on the INT8 build thread: it reads files)."""
        from detectors.int8 import int8_wanted  # deferred: imports OpenVINO
        from detectors.precision import read_cpu_info

        flags = read_cpu_info().flags
        with self._detectors_lock:
            running = list(self._detectors.items())
        base = self.loaded.base_dir
        wanted = {id(d): s.imgsz for s, d in running if int8_wanted(s, d, resolve_model_path(s, base), flags)}
        sizes: dict[int, list[str]] = {}
        for cam in list(self.cameras.values()):  # one copy: the loop may change the dict meanwhile
            if id(cam.detector) in wanted:
                sizes.setdefault(wanted[id(cam.detector)], []).append(cam.name)
        return sizes

    def _reopen_detectors(self, size: int) -> None:
        """Open the detectors at ``size`` again (they pick up the INT8 model if its gate passed); the loop hands
        them to the cameras (``apply_reopened_detectors``)."""
        with self._detectors_lock:
            stale = [(s, d) for s, d in self._detectors.items() if s.imgsz == size]
        for settings, old in stale:
            try:
                new = create_detector(settings, self.loaded.base_dir)
            except DetectorError as exc:  # a broken build: the cameras keep the detector they have
                log.warning("detector at imgsz %d not reopened after the INT8 build: %s", size, exc)
                continue
            with self._detectors_lock:
                if self._detectors.get(settings) is old:
                    self._detectors[settings] = new
            self._reopened.put((old, new))

    def _stop_camera(
        self, cam: CameraRuntime, reason: str, wait: bool = True, keep_offline: bool = False, handoff: bool = False
    ) -> None:
        """Stop reading (finishing clips) and close the camera's open incidents.

        ``keep_offline``: a camera_offline incident stays open across a clean restart (one outage, one incident).
        ``handoff``: another node carries the camera on: every incident stays open for it.
        """
        self.calibrator.remove(cam.name)
        for worker in {id(w): w for w in (cam.worker, cam.recorder)}.values():
            if wait:
                worker.stop()
            else:  # a hung stream may take its read timeout to stop: never hold up the other cameras
                threading.Thread(target=worker.stop, name=f"stop-{cam.name}", daemon=True).start()
        if handoff:
            return
        for active in cam.rules:
            self._close_rule(active.config.rule_id, reason)
        if cam.offline is not None and not keep_offline:
            self._close_rule(cam.offline.rule_id, reason)

    def _close_rule(self, rule_id: str, reason: str) -> None:
        if self.dispatcher is not None:
            self.dispatcher.submit(CloseRule(rule_id, self.clock.now(), reason))

    def _start_speakers(self) -> None:
        cfg = self.loaded.config
        held = speaker_held(self.store.r) if self.store is not None else never_held  # a live talk holds the speaker
        self.announcer = Announcer(dict(cfg.speakers), groups=cfg.speaker_groups, held=held)
        if self.dispatcher is not None:
            self.dispatcher.announcer = self.announcer
        speakers = {name: channel.speaker for name, channel in self.announcer.channels.items()}
        self.speaker_health = HealthMonitor(speakers, cfg.speaker_health_interval_s).start()

    def _stop_speakers(self, wait: bool = True) -> None:
        health, announcer = self.speaker_health, self.announcer
        if health is not None:
            health.close()
        if announcer is not None:
            if wait:
                announcer.close(SPEAKERS_STOP_S)
            else:  # queued announcements finish in the background
                threading.Thread(target=announcer.close, name="old-speakers", daemon=True).start()

    def stop(self) -> None:
        """Stop reading, finish clips and announcements, close open incidents, deliver what the store can take."""
        if self._stopped:
            return
        self._stopped = True
        self.stop_event.set()
        self.frame_ready.set()  # wakes the loop
        self.calibrator.stop()
        if self.int8_builds is not None:
            self.int8_builds.stop()
        if self.retention is not None:
            self.retention.stop()
        if self.status is not None:
            self.status.stop()
        for cam in self.cameras.values():
            self._stop_camera(cam, "engine_stop", keep_offline=True, handoff=self.ownership is not None)
        self._stop_speakers()
        if self.broadcaster is not None:  # after the speakers: the plays they cut short are recorded too
            self.broadcaster.stop()
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self.notifier is not None:
            self.notifier.close(10)
        if self.delivery is not None:
            if not self.delivery.flush(STOP_FLUSH_S):
                assert self.outbox is not None
                log.warning("%d incident change(s) stay in the outbox for the next start", self.outbox.pending())
            self.delivery.stop()
        if self.ownership is not None:  # after the last changes were delivered under this node's tokens
            self.ownership.stop()
        if self.outbox is not None:
            self.outbox.close()
        if self.redis_keeper is not None:
            self.redis_keeper.stop()

    def run(self, duration_s: float | None = None, started: bool = False) -> None:
        """Start (unless ``started``), detect until stopped (or ``duration_s`` passed), then stop cleanly."""
        if not started:
            self.start()
        clock = self.clock
        deadline = None if duration_s is None else clock.monotonic() + duration_s
        next_health = clock.monotonic()
        try:
            while not self.stop_event.is_set():
                if deadline is not None and clock.monotonic() >= deadline:
                    break
                self.frame_ready.clear()  # before looking: a frame published meanwhile sets it again
                if not self.detect_once():  # nothing new: sleep until a frame comes or the next health round
                    until = next_health if deadline is None else min(next_health, deadline)
                    self.frame_ready.wait(min(HEALTH_INTERVAL_S, max(0.0, until - clock.monotonic())))
                if clock.monotonic() >= next_health:
                    self.check_health(clock.now())
                    self.tick_rules(clock.now())
                    self.apply_calibrations()
                    self.apply_reopened_detectors()
                    self.reload_if_changed()
                    if self.ownership is not None:
                        self._follow_ownership()
                    next_health += HEALTH_INTERVAL_S
        finally:
            self.stop()

    # -- crash recovery --------------------------------------------------------------------------
    def _recover(self, last_alive: float | None) -> None:
        """Carry on or close what the previous run left open (see monitor/runtime/recovery.py)."""
        assert self.outbox is not None
        self._carry_on(self.outbox.open_incidents(), self.cameras.values(), last_alive, "left open by the previous run")
        self._remove_partial_clips()

    def _carry_on(
        self, incidents: list[Incident], cameras: Iterable[CameraRuntime], last_alive: float | None, source: str
    ) -> None:
        """Resume (same incident, rule state, cooldown) or close incidents found open, per the recovery plan."""
        assert self.dispatcher is not None
        runtimes: dict[str, RuleRuntime | OfflineRuntime] = {}
        for cam in cameras:
            runtimes.update({active.config.rule_id: active.runtime for active in cam.rules})
            if cam.offline is not None:
                runtimes[cam.offline.rule_id] = cam.offline
        for step in plan_recovery(incidents, runtimes, self.clock.now(), last_alive):
            incident = step.incident
            if step.action == "resume":
                runtimes[incident.rule].resume(incident.opened_ts, incident.peak_count, last_announced(incident))
                note = step.reason if self.ownership is None else f"{source}: {step.reason}"
                self.dispatcher.submit(Adopt(incident, note))
            else:
                self.dispatcher.submit(Finish(incident, step.at, "recovered", step.reason))
            if step.clip_lost:
                self.dispatcher.submit(MediaLost(incident.id, "the engine stopped before its clip was written"))
            log.warning("INCIDENT %s (%s on %s) %s: %s (%s)", incident.id, incident.kind, incident.camera, source,
                        "resumed" if step.action == "resume" else "closed", step.reason)  # fmt: skip

    def _hand_leftovers_to_store(self) -> None:
        """Clustered start: deliver what an earlier run left in the outbox (under its old claims) before this node
        claims anew, and drop its copies of open incidents: the store holds them for whichever node runs each
        camera now."""
        assert self.delivery is not None and self.outbox is not None
        if not self.delivery.flush(STOP_FLUSH_S):
            log.warning("cluster: %d change(s) of an earlier run not delivered yet (refused if their camera has "
                        "a newer owner)", self.outbox.pending())  # fmt: skip
        if dropped := self.outbox.forget_open():
            log.info("cluster: %d open incident(s) of an earlier run left to the store", dropped)

    def _hand_over(self, cam: CameraRuntime, command: LetGo) -> None:
        """A planned handoff, on a thread of its own: stop the camera (finishing its clips), then wait until its
        changes are in the outbox and delivered under the claim still held; the claim is deleted after this."""
        assert self.dispatcher is not None and self.delivery is not None and self.outbox is not None
        try:
            self._stop_camera(cam, "handoff", handoff=True)
            handled = self.dispatcher.wait_handled(HANDOVER_S)
            if handled and self.delivery.flush(HANDOVER_S, fence=command.token):
                self.outbox.forget_open(cam.name)
                log.info("cluster: camera %s: last changes delivered, handing it over", cam.name)
        finally:
            command.delivered.set()

    def _follow_ownership(self) -> None:
        """Clustered: start the cameras this node won (carrying their incidents on), stop those it gave up."""
        assert self.ownership is not None
        for command in self.ownership.commands():
            old = self.cameras.pop(command.camera, None)
            if isinstance(command, LetGo) and command.planned:
                if old is None:
                    command.delivered.set()
                else:
                    threading.Thread(target=self._hand_over, args=(old, command), name=f"handover-{old.name}",
                                     daemon=True).start()  # fmt: skip
                    log.info("cluster: camera %s stops here (%s)", command.camera, command.reason)
            elif old is not None:
                self._stop_camera(old, "handoff", wait=False, handoff=True)
                reason = command.reason if isinstance(command, LetGo) else "claimed again"
                log.info("cluster: camera %s stopped here (%s)", command.camera, reason)
            if isinstance(command, TakeOn) and command.camera in self.loaded.config.cameras:
                self.cameras[command.camera] = cam = self._build_camera(command.camera)
                self._carry_on(list(command.incidents), [cam], command.last_alive, f"taken over by node {self.node}")
                self._start_camera(cam)
                log.info("cluster: camera %s runs on node %s (token %d)", command.camera, self.node, command.token)

    def _remove_partial_clips(self) -> None:
        """Clips a crash left half-written (``*.mp4.part``) cannot be finished without their ring: remove them."""
        for part in (self.data_dir / "clips").glob("*.part"):
            try:
                part.unlink()
                log.warning("removed the half-written clip %s (the engine stopped while writing it)", part.name)
            except OSError as exc:
                log.error("could not remove the half-written clip %s: %s", part, exc)

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
        if self.broadcaster is not None:
            self.broadcaster.configure(runtime_broadcasts(new.config.broadcasts, new.base_dir))
        for name in plan.remove:
            self._stop_camera(self.cameras.pop(name), "camera_removed", wait=False)
            log.info("config reload: camera %s removed", name)
        for name in plan.restart:
            self._stop_camera(self.cameras[name], "config_changed", wait=False, keep_offline=True)
            log.info("config reload: camera %s restarts (its input or detector changed)", name)
        if self.ownership is not None:  # which cameras start here is the cluster's decision
            plan.add.clear()
            self.ownership.node.set_cameras(new.config.cameras)
        for name in plan.add + plan.restart:
            old = self.cameras.get(name)
            self.cameras[name] = cam = self._build_camera(name)
            if old is not None and old.offline is not None:
                cam.offline = old.offline  # an outage stays one incident across the restart
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
                self._close_rule(active.config.rule_id, "rule_changed")
        have = [active.config for active in kept]
        cam.rules = kept + [ActiveRule(build_runtime(rule)) for rule in wanted if rule not in have]

    # -- the detection loop --------------------------------------------------------------------
    def detect_once(self) -> bool:
        """Run each model once on every camera's newest unseen frame; False when there was none.

        A frame that waited longer than ``max(1 s, 2 detection intervals)`` is skipped, not queued:
        under overload detection stays current and the skips are counted as dropped.
        """
        now = self.clock.monotonic()
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
            t0 = self.clock.monotonic()
            try:
                results = detector.detect([frame.image for _, frame in group])  # one batched call per model
            except DetectorError as exc:  # e.g. every Triton server down: drop these frames, keep the loop going
                self._detection_failed(group, exc)
                continue
            self._detector_problem = None
            if self.metrics is not None:
                self.metrics.inference(self.clock.monotonic() - t0)
            for (cam, frame), detections in zip(group, results, strict=True):
                cam.detect_times.append(self.clock.monotonic())
                cam.detections += 1
                if self.metrics is not None:
                    self.metrics.detection(cam.name, self.clock.monotonic() - frame.arrived)
                self.observe(cam, frame, detections.scaled(1 / frame.scale))
        return bool(batch)

    def _detection_failed(self, group: list[tuple[CameraRuntime, Frame]], exc: DetectorError) -> None:
        """Count the frames as dropped and say why once (the next frames try again; rules keep ticking)."""
        problem = str(exc)
        if problem != self._detector_problem:
            log.error("detection failed, frames dropped until it works again: %s", problem)
        self._detector_problem = problem
        for cam, _ in group:
            cam.dropped += 1
            if self.metrics is not None:
                self.metrics.dropped(cam.name, 1)

    def _moved(self, cam: CameraRuntime, frame: Frame) -> bool:
        thumb = thumbnail(frame.image)
        if changed(cam.motion_thumb, thumb):
            cam.motion_thumb = thumb
            return True
        return False

    def observe(self, cam: CameraRuntime, frame: Frame, detections: Detections, reuse: bool = False) -> None:
        """Track, count zones, advance the camera's rules and hand what they decided to the dispatcher.

        ``reuse``: the motion gate kept the previous detections (already tracked) for this frame.
        """
        if not reuse:
            detections = cam.tracker.update(frame.ts, detections)
        polygons = cam.zone_polygons(frame.size)
        zones = count_zones_filtered(detections, polygons, cam.filters)
        obs = Observation(cam.name, frame.ts, detections, zones)
        cam.last, cam.last_frame = obs, frame
        for active in cam.rules:
            self._dispatch(cam, active, active.runtime.step(obs, polygons), frame, obs)

    def tick_rules(self, now: float) -> None:
        """Advance schedules, repeats and escalations even for cameras that send nothing."""
        for cam in self.cameras.values():
            for active in cam.rules:
                self._dispatch(cam, active, active.runtime.tick(now), cam.last_frame, cam.last)

    def _dispatch(
        self, cam: CameraRuntime, active: ActiveRule, step: RuleStep, frame: Frame | None, obs: Observation | None
    ) -> None:
        """Hand a step to the dispatcher if it changed anything; an opening carries its frame for the snapshot."""
        if not (step.transitions or step.decision.notable):  # most steps change nothing: they stay on the loop
            return
        evidence = None
        if frame is not None and obs is not None and any(t.kind == "opened" for t in step.transitions):
            evidence = Evidence(frame, obs, cam.zone_polygons(frame.size), active.config.zone)
        rule = active.config
        speech = None
        if rule.announcement:
            speakers = rule.speakers if rule.speakers is not None else cam.config.speakers
            chime = self.loaded.resolve(rule.chime) if rule.chime else None
            speech = Speech(self.loaded.resolve(rule.announcement), tuple(speakers), rule.priority, chime)
        assert self.dispatcher is not None
        self.dispatcher.submit(
            RuleOutput(
                rule.rule_id,
                active.runtime.incident_kind,
                cam.name,
                rule.zone,
                tuple(step.transitions),
                step.decision,
                speech,
                evidence,
                cam.recorder,
            )
        )

    def check_health(self, now: float) -> None:
        """Feed each camera's offline rule: no frames past its grace period opens camera_offline."""
        for cam in self.cameras.values():
            if cam.offline is None:
                continue
            st = cam.worker.status()
            receiving = st.online and st.last_arrival is not None and now - st.last_arrival < STALL_S
            step = cam.offline.update(now, receiving, st.last_arrival, st.last_error)
            if step.transitions and self.dispatcher is not None:
                self.dispatcher.submit(
                    RuleOutput(cam.offline.rule_id, "camera_offline", cam.name, None, tuple(step.transitions))
                )
