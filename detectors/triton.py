"""Detect through shared Triton servers: uint8 letterboxed frames over HTTP or gRPC, failover in list order.

Every node letterboxes its frames itself (``Letterbox``, as the local backends do) and sends the padded
BGR bytes as one (N, H, W, 3) uint8 request per detect call; the model behind the URL takes exactly that
(``detectors.triton_repo`` adds the uint8 -> float prefix to the graph), so a 640x480 frame costs
0.9 MB on the wire instead of 3.7 MB of float32. Triton's dynamic batcher merges requests of
several nodes into one GPU batch. NMS and keypoint decoding stay on the node (``decode``), so results
are the local ONNX backend's. Each URL's scheme picks the protocol (``http://``, port 8000 by default, or
``grpc://``, 8001); one list may mix both, and ``Connection`` hides what differs between the two clients.

Failover: requests go to one server (the first that is ready at startup). A request that fails
(connection refused, or no answer within ``REQUEST_TIMEOUT_S``) moves on to the next server in list order
whose server-ready and model-ready (``/v2/health/ready`` or the ServerReady / ModelReady RPCs) answer
within ``PROBE_TIMEOUT_S``, and the same batch is sent there, so a silent server costs at most 3 + 1 s
before detection continues. The detector then stays on the new server (no switching back when the old
one recovers: no flapping, and nodes that failed over together keep sharing batches); the old one is tried
again only when the current one fails.
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
PROBE_TIMEOUT_S = 1.0  # connect + answer for a readiness check; REQUEST + PROBE stays under the 5 s failover bound
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}  # Triton's own defaults; the URL scheme picks the protocol
LATENCY_SAMPLES = 512  # per-server round trips kept for the percentiles in ``stats``
# Refused, reset or timed out (OSError), closed mid-response (geventhttpclient's HTTPConnectionClosed).
NETWORK_ERRORS: tuple[type[Exception], ...] = (OSError, http.client.HTTPException)


@dataclass(frozen=True, slots=True)
class TritonServer:
    """One configured server: ``http://host:port/model`` or ``grpc://host:port/model``."""

    url: str
    scheme: str  # "http" or "grpc": which tritonclient module talks to it
    address: str  # host:port
    model: str


def parse_server(url: str) -> TritonServer:
    """``http://host:8000/yolo`` or ``grpc://host:8001/yolo`` -> its parts; DetectorError for anything else."""
    parsed = urlparse(url)
    model = parsed.path.strip("/")
    if parsed.scheme not in DEFAULT_PORTS or not parsed.hostname or not model or "/" in model:
        raise DetectorError(
            f"not a Triton model URL (http://host:8000/MODEL or grpc://host:8001/MODEL): {redact_url(url)}"
        )
    port = parsed.port or DEFAULT_PORTS[parsed.scheme]
    return TritonServer(url, parsed.scheme, f"{parsed.hostname}:{port}", model)


def head_layout(task: str | None, rows: int) -> tuple[int, tuple[int, int] | None]:
    """(classes, keypoint shape) of a raw head with ``rows`` rows for ``task`` ("pose" or "detect")."""
    if task is None:
        raise DetectorError("detector.task (pose or detect) is needed for Triton URLs: the server does not say")
    kpt = COCO_KEYPOINTS if task == "pose" else None
    classes = rows - 4 - (math.prod(kpt) if kpt else 0)
    if classes < 1:
        raise DetectorError(f"a {task} model cannot have {rows} output rows")
    return classes, kpt


@dataclass(frozen=True, slots=True)
class ModelLayout:
    """What a server says about a model, the same whichever protocol asked: tensors by name, batch limit."""

    inputs: dict[str, tuple[str, tuple[int, ...]]]  # name -> (datatype, shape); -1 for variable sides
    outputs: dict[str, tuple[str, tuple[int, ...]]]
    max_batch_size: int


class Connection:
    """One client of one server: the only place that knows tritonclient.http from tritonclient.grpc.

    The two clients share their API but differ in three ways: HTTP takes its timeouts per client
    (``network_timeout``) while gRPC takes a deadline per call (``client_timeout``); HTTP tensors are sent
    and asked for as binary (``binary_data``), gRPC ones always are; HTTP returns metadata as JSON, gRPC as
    protobuf messages (read here as JSON, whose int64 shapes are strings). Both raise tritonclient's
    ``InferenceServerException`` (gRPC for network failures too).
    """

    def __init__(self, server: TritonServer, timeout: float) -> None:
        """A client for ``server`` whose every call gives up after ``timeout`` seconds."""
        self._lib: Any = importlib.import_module(f"tritonclient.{server.scheme}")  # deferred, untyped
        self._grpc = server.scheme == "grpc"
        self._call: dict[str, Any] = {"client_timeout": timeout} if self._grpc else {}
        self._binary: dict[str, Any] = {} if self._grpc else {"binary_data": True}
        options = {} if self._grpc else {"connection_timeout": PROBE_TIMEOUT_S, "network_timeout": timeout}
        self._client: Any = self._lib.InferenceServerClient(server.address, **options)

    def ready(self, model: str) -> bool:
        """Server ready and ``model`` loaded (``/v2/health/ready`` + model ready, or the two RPCs)."""
        return bool(self._client.is_server_ready(**self._call) and self._client.is_model_ready(model, **self._call))

    def infer(self, model: str, batch: NDArray[np.uint8]) -> NDArray[np.float32]:
        """``OUTPUT`` for one uint8 (N, H, W, 3) request."""
        request = self._lib.InferInput(INPUT, list(batch.shape), "UINT8")
        request.set_data_from_numpy(batch, **self._binary)
        wanted = [self._lib.InferRequestedOutput(OUTPUT, **self._binary)]
        result = self._client.infer(model, [request], outputs=wanted, **self._call)
        return np.asarray(result.as_numpy(OUTPUT), np.float32)

    def layout(self, model: str) -> ModelLayout:
        """The model's tensors and ``max_batch_size``."""
        as_json = {"as_json": True} if self._grpc else {}
        meta: dict[str, Any] = self._client.get_model_metadata(model, **as_json, **self._call)
        config: dict[str, Any] = self._client.get_model_config(model, **as_json, **self._call)
        if self._grpc:
            config = config.get("config", {})  # gRPC wraps it in ModelConfigResponse
        return ModelLayout(_tensors(meta, "inputs"), _tensors(meta, "outputs"), int(config.get("max_batch_size", 0)))

    def close(self) -> None:
        """Close its connections (HTTP pool or gRPC channel)."""
        self._client.close()


def _tensors(meta: dict[str, Any], key: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (datatype, shape) of metadata's ``inputs`` or ``outputs`` (``int``: gRPC's JSON has "-1")."""
    return {t["name"]: (t.get("datatype", ""), tuple(int(d) for d in t.get("shape", []))) for t in meta.get(key, [])}


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
        utils: Any = importlib.import_module("tritonclient.utils")  # deferred, untyped: only Triton needs it
        self._errors: tuple[type[Exception], ...] = (*NETWORK_ERRORS, utils.InferenceServerException)
        if not urls:
            raise DetectorError("no Triton server URL configured")
        self._config = config
        self._servers = [parse_server(u) for u in urls]
        self._stats = [ServerStats(redact_url(s.url)) for s in self._servers]
        self._lock = threading.Lock()  # stats and the active index, when several threads detect
        self._local = threading.local()  # tritonclient's HTTP (gevent) clients belong to the thread that made them
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
            f"uint8 NHWC, timeout {REQUEST_TIMEOUT_S:.0f} s + probe {PROBE_TIMEOUT_S:.0f} s)"
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
            except self._errors as exc:  # network, or the server's own error
                self._failed(i, exc)
                errors.append(f"{self._stats[i].url}: {exc}")
        raise DetectorError(f"no Triton server answered: {'; '.join(errors)}")

    def _request(self, i: int, batch: NDArray[np.uint8], moved_from: int | None) -> NDArray[np.float32]:
        started = time.perf_counter()
        out = self._client(i, "infer").infer(self._servers[i].model, batch)
        took = (time.perf_counter() - started) * 1e3
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
        clients: dict[tuple[int, str], Connection] = getattr(self._local, "clients", {})
        for kind in ("infer", "probe"):
            client = clients.pop((i, kind), None)
            if client is not None:
                client.close()

    def _ready(self, i: int) -> bool:
        """Server ready and model ready, each answered within ``PROBE_TIMEOUT_S``."""
        try:
            return self._client(i, "probe").ready(self._servers[i].model)
        except self._errors as exc:
            self._failed(i, exc)
            return False

    def _model_layout(self, i: int) -> tuple[int, int]:
        """(output rows, server max_batch_size); DetectorError unless the model takes uint8 NHWC input."""
        layout = self._client(i, "probe").layout(self._servers[i].model)
        datatype, shape = layout.inputs.get(INPUT, ("", ()))
        if datatype != "UINT8" or shape[-1:] != (3,) or len(layout.outputs.get(OUTPUT, ("", ()))[1]) < 2:
            raise DetectorError(
                f"{self._stats[i].url} does not take {INPUT} uint8 (N, H, W, 3) / give {OUTPUT}: serve a repository "
                "written by `python -m detectors.triton_repo`"
            )
        return layout.outputs[OUTPUT][1][1], max(1, layout.max_batch_size)

    def _client(self, i: int, kind: str) -> Connection:
        """This thread's connection to server ``i`` (``infer``: request timeout; ``probe``: health timeout)."""
        clients: dict[tuple[int, str], Connection] = self._local.__dict__.setdefault("clients", {})
        client = clients.get((i, kind))
        if client is None:
            client = Connection(self._servers[i], REQUEST_TIMEOUT_S if kind == "infer" else PROBE_TIMEOUT_S)
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
