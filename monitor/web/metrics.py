"""Prometheus metrics: state read from Redis at scrape time, plus counters the engine keeps in-process.

``monitor serve`` has no engine, so everything a review instance can know comes from Redis
(camera hashes, incident records). The engine passes an ``EngineMetrics`` to ``create_app`` and
updates it as it works; those series only exist where the engine runs.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterable

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.config import LoadedConfig
from monitor.store import fencing
from monitor.store.incidents import INDEX, camera_key
from monitor.web import views

INCIDENT_CACHE_S = 10.0  # every record is read to count them: at most once per this many seconds


class EngineMetrics:
    """Counters and latencies only the running engine knows; thread-safe (prometheus_client locks)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._latency = Histogram(
            "vm_engine_detection_latency_seconds",
            "Seconds from frame capture to its detections being available.",
            ["camera"],
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
            registry=self.registry,
        )
        self._inference = Histogram(
            "vm_engine_inference_seconds",
            "Seconds one detector batch took.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5),
            registry=self.registry,
        )
        self._frames = Counter(
            "vm_engine_frames_detected", "Frames run through the detector.", ["camera"], registry=self.registry
        )
        self._dropped = Counter(
            "vm_engine_frames_dropped",
            "Frames skipped because detection fell behind.",
            ["camera"],
            registry=self.registry,
        )
        self._incidents = Counter("vm_engine_incidents_opened", "Incidents opened.", ["kind"], registry=self.registry)
        self._announce = Histogram(
            "vm_engine_announcement_seconds",
            "Seconds an announcement took, by speaker and result.",
            ["speaker", "result"],
            buckets=(0.5, 1, 2, 5, 10, 20, 30, 60),
            registry=self.registry,
        )
        self._store_errors = Counter(
            "vm_engine_store_errors", "Redis errors seen by the engine.", registry=self.registry
        )
        self._fenced = Counter(
            "vm_engine_changes_fenced",
            "Incident changes of this engine the store refused as stale (a newer node owned the camera): dropped.",
            registry=self.registry,
        )

    def detection(self, camera: str, latency_s: float) -> None:
        """One frame's detections are ready ``latency_s`` after it was captured."""
        self._latency.labels(camera).observe(latency_s)
        self._frames.labels(camera).inc()

    def inference(self, seconds: float) -> None:
        """One detector batch finished."""
        self._inference.observe(seconds)

    def dropped(self, camera: str, frames: int = 1) -> None:
        """Frames were skipped for this camera."""
        self._dropped.labels(camera).inc(frames)

    def incident_opened(self, kind: str) -> None:
        """An incident of this kind was opened."""
        self._incidents.labels(kind).inc()

    def announcement(self, speaker: str, ok: bool, seconds: float) -> None:
        """A playback attempt ended."""
        self._announce.labels(speaker, "ok" if ok else "failed").observe(seconds)

    def store_error(self) -> None:
        """A Redis call failed."""
        self._store_errors.inc()

    def change_fenced(self) -> None:
        """The store refused one of this engine's changes (fencing token older than the camera's newest)."""
        self._fenced.inc()


class RedisCollector(Collector):
    """Camera and incident state from Redis, computed at scrape time."""

    def __init__(self, client: redis.Redis, config: LoadedConfig | None) -> None:
        self.r = client
        self.config = config
        self._cache: tuple[float, list[Metric]] = (0.0, [])

    def collect(self) -> Iterable[Metric]:
        """Per-camera gauges and counters, incident totals, speaker failures; ``vm_redis_up`` 0 if unreachable."""
        up = GaugeMetricFamily("vm_redis_up", "1 when Redis answered this scrape.")
        try:
            metrics = [*self._cameras(), self._fenced(), *self._incidents()]
        except redis.RedisError:
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *metrics]

    def _cameras(self) -> list[Metric]:
        cams = views.camera_statuses(self.r, self.config)
        now = time.time()
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "online": GaugeMetricFamily("vm_camera_online", "1 while the camera delivers frames.", labels=["camera"]),
            "reporting": GaugeMetricFamily(
                "vm_camera_reporting", "1 while an engine publishes this camera's status.", labels=["camera"]
            ),
            "people": GaugeMetricFamily("vm_camera_people", "People detected in the latest frame.", labels=["camera"]),
            "input_fps": GaugeMetricFamily("vm_camera_input_fps", "Frames per second received.", labels=["camera"]),
            "detect_fps": GaugeMetricFamily("vm_camera_detect_fps", "Frames per second detected.", labels=["camera"]),
            "dropped": CounterMetricFamily(
                "vm_camera_dropped_frames", "Frames skipped since the engine started.", labels=["camera"]
            ),
            "reconnects": CounterMetricFamily(
                "vm_camera_reconnects", "Stream reconnects since the engine started.", labels=["camera"]
            ),
            "age": GaugeMetricFamily(
                "vm_camera_last_frame_age_seconds", "Seconds since the last frame arrived.", labels=["camera"]
            ),
        }
        for cam in cams:
            families["online"].add_metric([cam.name], int(cam.online))
            families["reporting"].add_metric([cam.name], int(cam.reporting))
            if not cam.reporting:
                continue
            families["people"].add_metric([cam.name], cam.people)
            families["input_fps"].add_metric([cam.name], cam.input_fps)
            families["detect_fps"].add_metric([cam.name], cam.detect_fps)
            families["dropped"].add_metric([cam.name], cam.dropped)
            families["reconnects"].add_metric([cam.name], cam.reconnects)
            raw = self.r.hget(camera_key(cam.name), "last_frame_ts")
            if raw is not None and float(views.text(raw) or 0) > 0:
                families["age"].add_metric([cam.name], max(0.0, now - float(views.text(raw))))
        return list(families.values())

    def _fenced(self) -> Metric:
        """Writes Redis refused per camera because a newer owner had it (``cluster:``; from every node)."""
        family = CounterMetricFamily(
            "vm_fenced_writes", "Store writes refused as stale: an older owner of the camera wrote.", labels=["camera"]
        )
        for camera, count in sorted(fencing.rejected(self.r).items()):
            family.add_metric([camera], count)
        return family

    def _incidents(self) -> list[Metric]:
        stamp, cached = self._cache
        if time.monotonic() - stamp < INCIDENT_CACHE_S and cached:
            return cached
        by_state: Tally[tuple[str, str]] = Tally()
        anns: Tally[tuple[str, str]] = Tally()
        ids = [views.text(i) for i in self.r.zrange(INDEX, 0, -1)]
        for incident in views.incidents(self.r, ids):
            by_state[(incident.kind, incident.status)] += 1
            for a in incident.announcements:
                anns[(a.speaker, "ok" if a.ok else "failed")] += 1
        incidents = GaugeMetricFamily(
            "vm_incidents", "Incidents in the store by type and status.", labels=["kind", "status"]
        )
        for (kind, status), n in sorted(by_state.items()):
            incidents.add_metric([kind, status], n)
        announcements = CounterMetricFamily(
            "vm_announcements", "Announcement attempts recorded on incidents.", labels=["speaker", "result"]
        )
        failures = CounterMetricFamily(
            "vm_speaker_failures", "Failed announcement attempts recorded on incidents.", labels=["speaker"]
        )
        for (speaker, result), n in sorted(anns.items()):
            announcements.add_metric([speaker, result], n)
            if result == "failed":
                failures.add_metric([speaker], n)
        families: list[Metric] = [incidents, announcements, failures]
        self._cache = (time.monotonic(), families)
        return families


class MetricsExporter:
    """Renders /metrics: the Redis-derived state and, inside the engine, its own counters."""

    def __init__(self, client: redis.Redis, config: LoadedConfig | None, engine: EngineMetrics | None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RedisCollector(client, config))
        self.engine = engine

    def render(self) -> bytes:
        """Prometheus text exposition format."""
        text = generate_latest(self.registry)
        return text + generate_latest(self.engine.registry) if self.engine is not None else text
