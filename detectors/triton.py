"""Detect through shared Triton servers: uint8 letterboxed frames over HTTP, failover in list order.

Every node letterboxes its frames itself (``Letterbox``, as the local backends do) and sends the padded
BGR bytes as one (N, H, W, 3) uint8 request per detect call; the model behind the URL takes exactly that
(``detectors.triton_repo`` adds the uint8 -> float prefix to the graph), so a 640x480 frame costs
0.9 MB on the wire instead of 3.7 MB of float32. Triton's dynamic batcher merges requests of
several nodes into one GPU batch. NMS and keypoint decoding stay on the node (``decode``), so results
are the local ONNX backend's.

Failover: requests go to one server (the first that is ready at startup). A request that fails
(connection refused, or no answer within ``REQUEST_TIMEOUT_S``) moves on to the next server in list order
whose ``/v2/health/ready`` and model-ready answer within ``PROBE_TIMEOUT_S``, and the same batch is sent
there, so a silent server costs at most 3 + 1 s before detection continues. The detector then stays on
the new server (no switching back when the old one recovers: no flapping, and nodes that failed over
together keep sharing batches); the old one is tried again only when the current one fails.
"""

from __future__ import annotations

import http.client
import importlib
import logging
import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import numpy as np
from numpy.typing import NDArray

from detectors.base import DetectorError
from detectors.config import DetectorConfig
from detectors.postprocess import Letterbox, decode
from monitor.redact import redact_url
from monitor.types import Detections

log = logging.getLogger(__name__)

INPUT, OUTPUT = "images_u8", "output0"  # the names detectors.triton_repo gives the graph's ends
STRIDE = 32  # YOLO's largest stride: letterboxed sides are multiples of it
COCO_KEYPOINTS = (17, 3)  # every Ultralytics pose model: 17 body points, (x, y, visibility)
PERSON_CLASS = 0
REQUEST_TIMEOUT_S = 3.0  # an inference not answered within this counts as a silent server
PROBE_TIMEOUT_S = 1.0  # connect + answer for /v2/health/ready; REQUEST + PROBE stays under the 5 s failover bound
LATENCY_SAMPLES = 512  # per-server round trips kept for the percentiles in ``stats``
# Refused, reset or timed out (OSError), closed mid-response (geventhttpclient's HTTPConnectionClosed).
NETWORK_ERRORS: tuple[type[Exception], ...] = (OSError, http.client.HTTPException)


@dataclass(frozen=True, slots=True)
class TritonServer:
    """One configured server: ``http://host:port/model``."""

    url: str
    address: str  # host:port
    model: str


def parse_server(url: str) -> TritonServer:
    """``http://host:8000/yolo`` -> its parts; DetectorError for anything this client cannot use."""
    parsed = urlparse(url)
    if parsed.scheme == "grpc":
        raise DetectorError(
            f"{redact_url(url)}: use Triton's HTTP port (http://host:8000/MODEL); this client sends uint8 over HTTP"
        )
    model = parsed.path.strip("/")
    if parsed.scheme != "http" or not parsed.hostname or not model or "/" in model:
        raise DetectorError(f"not a Triton model URL (http://host:port/MODEL): {redact_url(url)}")
    return TritonServer(url, f"{parsed.hostname}:{parsed.port or 8000}", model)


def head_layout(task: str | None, rows: int) -> tuple[int, tuple[int, int] | None]:
    """(classes, keypoint shape) of a raw head with ``rows`` rows for ``task`` ("pose" or "detect")."""
    if task is None:
        raise DetectorError("detector.task (pose or detect) is needed for Triton URLs: the server does not say")
    kpt = COCO_KEYPOINTS if task == "pose" else None
    classes = rows - 4 - (math.prod(kpt) if kpt else 0)
    if classes < 1:
        raise DetectorError(f"a {task} model cannot have {rows} output rows")
    return classes, kpt


@dataclass(slots=True)
class ServerStats:
    """What one node saw of one server: requests, images (its batch sizes), failures, round-trip times."""

    url: str  # redacted
    requests: int = 0
    images: int = 0
    failures: int = 0
    last_error: str = ""
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))

    def summary(self) -> dict[str, Any]:
        """Plain numbers for logs, metrics and benches."""
        lat = np.asarray(self.latency_ms, np.float64)
        return {
            "url": self.url,
            "requests": self.requests,
            "images": self.images,
            "mean_batch": self.images / self.requests if self.requests else 0.0,
            "failures": self.failures,
            "latency_ms_mean": float(lat.mean()) if lat.size else 0.0,
            "latency_ms_p95": float(np.percentile(lat, 95)) if lat.size else 0.0,
            "last_error": self.last_error,
        }


class TritonDetector:
    """``Detector`` whose network runs on Triton servers (see module doc); NumPy letterbox and NMS here."""

    def __init__(self, config: DetectorConfig, urls: Sequence[str]) -> None:
        """Parse the URLs, pick the first ready server, read its model's output layout and warm up."""
        self._http: Any = importlib.import_module("tritonclient.http")  # deferred, untyped: only Triton needs it
        if not urls:
            raise DetectorError("no Triton server URL configured")
        self._config = config
        self._servers = [parse_server(u) for u in urls]
        self._stats = [ServerStats(redact_url(s.url)) for s in self._servers]
        self._lock = threading.Lock()  # stats and the active index, when several threads detect
        self._local = threading.local()  # tritonclient's gevent clients belong to the thread that made them
        self._failovers = 0
        active = next((i for i in range(len(self._servers)) if self._ready(i)), None)
        if active is None:
            raise DetectorError(f"no Triton server is ready: {', '.join(s.url for s in self._stats)}")
        self._active = active
        rows, self._server_batch = self._model_layout(active)
        self._num_classes, self._kpt = head_layout(config.task, rows)
        self._name = f"triton:{self._servers[0].model}@{config.imgsz}"
        started = time.perf_counter()
        self.detect([np.zeros((config.imgsz, config.imgsz, 3), np.uint8)])
        log.info("loaded %s, warm-up %.0f ms", self.describe(), (time.perf_counter() - started) * 1e3)

    @property
    def name(self) -> str:
        """Model name and inference size, for logs and metrics labels."""
        return self._name

    @property
    def task(self) -> str:
        """The configured task ("pose" or "detect")."""
        return "pose" if self._kpt else "detect"

    @property
    def active(self) -> str:
        """The (redacted) URL requests go to now."""
        with self._lock:
            return self._stats[self._active].url

    def describe(self) -> str:
        """Servers in failover order and every setting that changes the output."""
        c = self._config
        return (
            f"TritonDetector(servers=[{', '.join(s.url for s in self._stats)}], task={self.task}, imgsz={c.imgsz}, "
            f"conf={c.confidence}, iou={c.iou}, max_batch={min(c.max_batch, self._server_batch)}, "
            f"uint8 NHWC over HTTP, timeout {REQUEST_TIMEOUT_S:.0f} s + probe {PROBE_TIMEOUT_S:.0f} s)"
        )

    def stats(self) -> dict[str, Any]:
        """The active server, failovers so far, and per-server requests, batch sizes and latency."""
        with self._lock:
            return {
                "active": self._stats[self._active].url,
                "failovers": self._failovers,
                "servers": [s.summary() for s in self._stats],
            }

    def detect(self, images: Sequence[NDArray[np.uint8]]) -> list[Detections]:
        """One ``Detections`` per BGR image, in input order; same-size letterboxes go in one request."""
        c = self._config
        plans: list[Letterbox] = []
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"image {i} must be (H, W, 3) BGR, got shape {image.shape}")
            plans.append(Letterbox.plan((image.shape[0], image.shape[1]), c.imgsz, STRIDE))
            groups[plans[-1].input_hw].append(i)
        step = min(c.max_batch, self._server_batch)
        out: list[Detections] = [Detections.empty()] * len(images)
        for ids in groups.values():
            for start in range(0, len(ids), step):
                chunk = ids[start : start + step]
                pred = self._infer(np.stack([plans[i].padded(images[i]) for i in chunk]))
                for row, i in enumerate(chunk):
                    out[i] = decode(
                        pred[row], plans[i], self._num_classes, self._kpt, c.confidence, c.iou, PERSON_CLASS
                    )
        return out

    # -- transport -----------------------------------------------------------------------------
    def _infer(self, batch: NDArray[np.uint8]) -> NDArray[np.float32]:
        """The raw head output for ``batch`` from the active server, failing over in list order."""
        with self._lock:
            first = self._active
        errors: list[str] = []
        for step in range(len(self._servers)):
            i = (first + step) % len(self._servers)
            if step and not self._ready(i):
                errors.append(f"{self._stats[i].url}: not ready")
                continue
            try:
                return self._request(i, batch, moved_from=first if step else None)
            except (*NETWORK_ERRORS, self._http.InferenceServerException) as exc:  # or the server's own error
                self._failed(i, exc)
                errors.append(f"{self._stats[i].url}: {exc}")
        raise DetectorError(f"no Triton server answered: {'; '.join(errors)}")

    def _request(self, i: int, batch: NDArray[np.uint8], moved_from: int | None) -> NDArray[np.float32]:
        server = self._servers[i]
        request = self._http.InferInput(INPUT, list(batch.shape), "UINT8")
        request.set_data_from_numpy(batch, binary_data=True)
        wanted = [self._http.InferRequestedOutput(OUTPUT, binary_data=True)]
        started = time.perf_counter()
        result = self._client(i, "infer").infer(server.model, [request], outputs=wanted)
        took = (time.perf_counter() - started) * 1e3
        out = np.asarray(result.as_numpy(OUTPUT), np.float32)
        with self._lock:
            stats = self._stats[i]
            stats.requests += 1
            stats.images += len(batch)
            stats.latency_ms.append(took)
            if moved_from is not None and self._active != i:
                self._failovers += 1
                log.warning("Triton: %s failed, detecting on %s now", self._stats[moved_from].url, stats.url)
            self._active = i
        return out

    def _failed(self, i: int, exc: BaseException) -> None:
        """Count the failure and drop this thread's connections to the server (they may be half-open)."""
        with self._lock:
            self._stats[i].failures += 1
            self._stats[i].last_error = f"{type(exc).__name__}: {exc}"
        clients: dict[tuple[int, str], Any] = getattr(self._local, "clients", {})
        for kind in ("infer", "probe"):
            client = clients.pop((i, kind), None)
            if client is not None:
                client.close()

    def _ready(self, i: int) -> bool:
        """``/v2/health/ready`` and the model's ready endpoint answer yes within ``PROBE_TIMEOUT_S``."""
        try:
            client = self._client(i, "probe")
            return bool(client.is_server_ready() and client.is_model_ready(self._servers[i].model))
        except (*NETWORK_ERRORS, self._http.InferenceServerException) as exc:
            self._failed(i, exc)
            return False

    def _model_layout(self, i: int) -> tuple[int, int]:
        """(output rows, server max_batch_size); DetectorError unless the model takes uint8 NHWC input."""
        server = self._servers[i]
        client = self._client(i, "probe")
        meta: dict[str, Any] = client.get_model_metadata(server.model)
        config: dict[str, Any] = client.get_model_config(server.model)
        inputs = {t["name"]: t for t in meta.get("inputs", [])}
        outputs = {t["name"]: t for t in meta.get("outputs", [])}
        image = inputs.get(INPUT, {})
        if image.get("datatype") != "UINT8" or image.get("shape", [])[-1:] != [3] or OUTPUT not in outputs:
            raise DetectorError(
                f"{self._stats[i].url} does not take {INPUT} uint8 (N, H, W, 3) / give {OUTPUT}: serve a repository "
                "written by `python -m detectors.triton_repo`"
            )
        return int(outputs[OUTPUT]["shape"][1]), max(1, int(config.get("max_batch_size", 1)))

    def _client(self, i: int, kind: str) -> Any:
        """This thread's client for server ``i`` (``infer``: request timeout; ``probe``: health timeout)."""
        clients: dict[tuple[int, str], Any] = self._local.__dict__.setdefault("clients", {})
        client = clients.get((i, kind))
        if client is None:
            timeout = REQUEST_TIMEOUT_S if kind == "infer" else PROBE_TIMEOUT_S
            client = self._http.InferenceServerClient(
                self._servers[i].address, connection_timeout=PROBE_TIMEOUT_S, network_timeout=timeout
            )
            clients[(i, kind)] = client
        return client


def parse_batch_metrics(text: str, model: str) -> tuple[float, float, float]:
    """(requests, inferences, executions) of ``model`` from Triton's Prometheus text (``:8002/metrics``).

    inferences / executions is the mean batch the model ran; above requests' own batch size means
    Triton merged requests (from several nodes).
    """
    wanted = {"nv_inference_request_success": 0.0, "nv_inference_count": 0.0, "nv_inference_exec_count": 0.0}
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name in wanted and f'model="{model}"' in rest:
            wanted[name] += float(rest.rsplit(" ", 1)[1])
    return wanted["nv_inference_request_success"], wanted["nv_inference_count"], wanted["nv_inference_exec_count"]
