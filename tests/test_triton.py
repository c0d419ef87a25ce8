"""Detection on shared Triton servers: uint8 graph prefix, two nodes through real stand-in servers, failover,
over HTTP and gRPC.

The servers are real ``tritonserver`` processes (pytriton's) serving the real model on the CPU; the
nodes are two ``create_detector`` detectors in two threads, as two machines would run them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from pydantic import ValidationError

from detectors import Detector, DetectorConfig, DetectorError, create_detector, ensure_default_model
from detectors.export import ExportedModel, ExportSettings, ensure_export
from detectors.postprocess import Letterbox, box_iou, preprocess
from detectors.triton import REQUEST_TIMEOUT_S, TritonDetector, parse_server
from detectors.triton_repo import INPUT, ServingSettings, add_uint8_input
from monitor.types import Detections
from tests.support.triton import StandIn, require_standin, standins, write_test_repository

ROOT = Path(__file__).resolve().parent.parent
IMGSZ = 640  # small: the stand-in runs on the same 2 shared cores as the nodes
FAILOVER_BOUND_S = 5.0
Image = npt.NDArray[np.uint8]


@pytest.fixture(scope="module")
def frames(square_mp4: Path) -> list[Image]:
    """Four frames of the sample video with 1-6 people each (two "cameras" per node)."""
    out: list[Image] = []
    with av.open(str(square_mp4)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in (250, 500, 520, 560):
                out.append(np.asarray(frame.to_ndarray(format="bgr24"), np.uint8))
            if len(out) == 4:
                break
    return out


@pytest.fixture(scope="module")
def exported() -> ExportedModel:
    """The default model's ONNX export (cached next to it)."""
    return ensure_export(ensure_default_model(ROOT / "models"), ExportSettings("onnx", dynamic=True))


def test_uint8_prefix_gives_the_float_models_output(exported: ExportedModel, frames: list[Image]) -> None:
    """Padded BGR uint8 in gives exactly what the float graph gives for ``preprocess``'s tensor."""
    u8 = add_uint8_input(onnx.load(str(exported.path)))
    (given,) = u8.graph.input
    assert given.name == INPUT and given.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value or d.dim_param for d in given.type.tensor_type.shape.dim] == ["batch", "height", "width", 3]
    float_session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    u8_session = ort.InferenceSession(u8.SerializeToString(), providers=["CPUExecutionProvider"])
    plans = [Letterbox.plan(f.shape[:2], IMGSZ, exported.stride) for f in frames[:2]]
    want = float_session.run(None, {"images": preprocess(frames[:2], plans)})[0]
    got = u8_session.run(None, {INPUT: np.stack([p.padded(f) for p, f in zip(plans, frames, strict=False)])})[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    assert want[:, 4].max() > 0.5, "the frames must contain confident people for this to mean anything"


def test_triton_model_settings_are_checked() -> None:
    """A list must be Triton URLs (HTTP and gRPC may mix); other schemes and model-less URLs are refused."""
    config = DetectorConfig.model_validate({"model": ["http://a:8000/yolo", "grpc://b:8001/yolo"], "task": "pose"})
    assert config.model == ("http://a:8000/yolo", "grpc://b:8001/yolo")
    assert hash(config) == hash(config.model_copy())  # engines key detectors by their config
    with pytest.raises(ValidationError, match="must be Triton URLs"):
        DetectorConfig.model_validate({"model": ["models/a.pt", "http://b:8000/yolo"]})
    for url in ("http://a:8000/", "grpc://a:8001/", "https://a:8000/yolo", "grpc://a:8001/yolo/1"):
        with pytest.raises(DetectorError, match="not a Triton model URL"):
            parse_server(url)
    assert (parse_server("http://a/yolo").scheme, parse_server("http://a/yolo").address) == ("http", "a:8000")
    assert (parse_server("grpc://a/yolo").scheme, parse_server("grpc://a/yolo").address) == ("grpc", "a:8001")
    assert parse_server("grpc://a:9001/yolo").address == "a:9001"


def test_no_ready_server_fails_at_startup() -> None:
    """Nothing listening on either protocol: the detector refuses to start (quickly) instead of failing every
    frame, and says which servers it tried."""
    from tests.support.processes import free_port

    urls = [f"http://127.0.0.1:{free_port()}/yolo", f"grpc://127.0.0.1:{free_port()}/yolo"]
    started = time.monotonic()
    with pytest.raises(DetectorError, match="no Triton server is ready") as failed:
        TritonDetector(DetectorConfig(task="pose"), urls)
    assert time.monotonic() - started < 5
    assert all(url in str(failed.value) for url in urls)


def _assert_same(want: Detections, got: Detections, label: str) -> None:
    assert len(got) == len(want), f"{label}: {len(got)} people vs local {len(want)}"
    if len(want):
        iou = box_iou(want.xyxy, got.xyxy)
        assert iou.max(axis=1).min() > 0.99, f"{label}: IoU {iou.max(axis=1)}"
        assert got.keypoints is not None and want.keypoints is not None


@dataclass
class Node:
    """One machine's detection loop: its cameras' frames, sent as one request per round."""

    name: str
    detector: Detector
    frames: list[Image]
    rounds: list[tuple[float, str, list[Detections]]] = field(default_factory=list)  # (done at, server, results)
    errors: list[BaseException] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        assert isinstance(self.detector, TritonDetector)
        while not stop.is_set():
            try:
                results = self.detector.detect(self.frames)
            except Exception as exc:  # recorded and asserted on: no round may fail
                self.errors.append(exc)
                return
            self.rounds.append((time.monotonic(), self.detector.active, results))

    def first_round_on(self, url: str, after: float) -> float | None:
        return next((t for t, server, _ in list(self.rounds) if server == url and t > after), None)

    def servers(self) -> list[dict[str, Any]]:
        """The detector's per-server stats, in its failover order."""
        assert isinstance(self.detector, TritonDetector)
        return list(self.detector.stats()["servers"])

    def url_for(self, server: StandIn) -> str:
        """The URL this node was configured with for ``server``: its HTTP or its gRPC one."""
        return next(str(s["url"]) for s in self.servers() if s["url"] in (server.url, server.grpc_url))

    def requests_to(self, server: StandIn) -> int:
        """Requests this node got answered by ``server`` so far (its own count)."""
        return next(int(s["requests"]) for s in self.servers() if s["url"] == self.url_for(server))


@contextlib.contextmanager
def running(nodes: list[Node]) -> Iterator[None]:
    """Every node detecting in its own thread for the block; stopped (and joined) after."""
    stop = threading.Event()
    threads = [threading.Thread(target=n.run, args=(stop,), name=n.name) for n in nodes]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(REQUEST_TIMEOUT_S * 3 + 10)


def _wait(condition: object, timeout: float, what: str, nodes: list[Node]) -> None:
    deadline = time.monotonic() + timeout
    while not callable(condition) or not condition():
        errors = [e for n in nodes for e in n.errors]
        assert not errors, f"a node failed: {errors!r}"
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_two_nodes_share_servers_merge_batches_and_fail_over(tmp_path: Path, frames: list[Image]) -> None:
    """Two nodes detect through stand-in server A (batches merge, results = local ONNX); A killed -> both on B
    within 5 s; B frozen (SIGSTOP: answers nothing) -> both on C within 5 s; detections go on throughout."""
    require_standin()
    # 100 ms queue delay: on 2 shared CPU cores a node needs tens of ms between requests, and the test must see
    # the merge every time (a GPU deployment uses the 5 ms default: requests from many nodes overlap anyway).
    repo = write_test_repository(tmp_path / "repo", ServingSettings(queue_delay_us=100_000, kind="KIND_CPU"))
    local = create_detector(DetectorConfig(imgsz=IMGSZ, backend="onnxruntime"))
    want = local.detect(frames)
    assert sum(len(d) for d in want) >= 4, "the chosen frames must show people"
    with standins(repo, tmp_path, 3) as (a, b, c):
        config = DetectorConfig(model=(a.url, b.url, c.url), task="pose", imgsz=IMGSZ)
        nodes = [Node("node1", create_detector(config), frames[:2]), Node("node2", create_detector(config), frames[2:])]
        before = a.batching()  # after both nodes' one-image warm-up requests
        try:
            with running(nodes):
                _check_shared(a, nodes, want, before)
                _check_failover(a, b, nodes, want, lambda: os.killpg(a.proc.pid, signal.SIGKILL), "killed")
                _check_failover(b, c, nodes, want, lambda: os.killpg(b.proc.pid, signal.SIGSTOP), "frozen")
        finally:
            os.killpg(b.proc.pid, signal.SIGCONT)
        stats = nodes[0].detector.stats()  # type: ignore[attr-defined]
        assert stats["failovers"] == 2 and stats["active"] == c.url
        assert [s["failures"] > 0 for s in stats["servers"]] == [True, True, False]
        assert all(
            s["requests"] > 0 and 1.5 < s["mean_batch"] <= 2 and s["latency_ms_mean"] > 0 for s in stats["servers"]
        )


def _check_shared(a: StandIn, nodes: list[Node], want: list[Detections], before: tuple[float, ...]) -> None:
    """Both nodes on A, results equal to the local backend's, and A's batcher merged their requests."""
    _wait(lambda: all(len(n.rounds) >= 6 for n in nodes), 240, "6 rounds per node on server A", nodes)
    for i, node in enumerate(nodes):
        for _, server, results in node.rounds:
            assert server == node.url_for(a)
            for j, got in enumerate(results):
                _assert_same(want[2 * i + j], got, f"{node.name} camera {j}")
    requests, inferences, executions = (now - then for now, then in zip(a.batching(), before, strict=True))
    print(f"server A: {requests:.0f} requests of 2 images in {executions:.0f} executions")
    assert requests >= 12 and inferences / requests == pytest.approx(2, abs=0.2)  # one request = a node's 2 cameras
    assert requests / executions > 1.3, f"requests {requests}, executions {executions}: batches did not merge"


def _check_failover(
    old: StandIn, new: StandIn, nodes: list[Node], want: list[Detections], fault: object, how: str
) -> None:
    """Break ``old``; every node must finish a round on ``new`` within 5 s, with the same detections."""
    assert callable(fault)
    _wait(lambda: all(n.rounds and n.rounds[-1][1] == n.url_for(old) for n in nodes), 60, "nodes on the old", nodes)
    broken_at = time.monotonic()
    fault()
    _wait(lambda: all(n.first_round_on(n.url_for(new), broken_at) for n in nodes), 30, "failover", nodes)
    for node in nodes:
        took = (node.first_round_on(node.url_for(new), broken_at) or 0) - broken_at
        assert took < FAILOVER_BOUND_S, f"{node.name}: {how} server replaced after {took:.1f} s"
        print(f"{node.name}: server {how} ({node.url_for(old)}), on {node.url_for(new)} after {took:.2f} s")
    count = {n.name: len(n.rounds) for n in nodes}
    _wait(lambda: all(len(n.rounds) >= count[n.name] + 2 for n in nodes), 60, "detections go on", nodes)
    for i, node in enumerate(nodes):
        _, server, results = node.rounds[-1]
        assert server == node.url_for(new)
        for j, got in enumerate(results):
            _assert_same(want[2 * i + j], got, f"{node.name} camera {j} after failover")


@pytest.mark.slow
def test_grpc_and_http_nodes_share_a_server_and_fail_over_across_protocols(tmp_path: Path, frames: list[Image]) -> None:
    """One node on server A through gRPC, one through HTTP: results = local ONNX, A's batcher merges their
    requests and A's own metrics count every request of both; A killed -> the gRPC node goes on over HTTP on B
    and the HTTP node over gRPC on B; B frozen (gRPC's deadline, HTTP's timeout) -> both on C; each within 5 s."""
    require_standin()
    repo = write_test_repository(tmp_path / "repo", ServingSettings(queue_delay_us=100_000, kind="KIND_CPU"))
    want = create_detector(DetectorConfig(imgsz=IMGSZ, backend="onnxruntime")).detect(frames)
    assert sum(len(d) for d in want) >= 4, "the chosen frames must show people"
    with standins(repo, tmp_path, 3) as (a, b, c):
        via_grpc = DetectorConfig(model=(a.grpc_url, b.url, c.grpc_url), task="pose", imgsz=IMGSZ)
        via_http = DetectorConfig(model=(a.url, b.grpc_url, c.url), task="pose", imgsz=IMGSZ)
        nodes = [
            Node("grpc-node", create_detector(via_grpc), frames[:2]),
            Node("http-node", create_detector(via_http), frames[2:]),
        ]
        before, sent = a.batching(), [n.requests_to(a) for n in nodes]  # after both warm-up requests
        with running(nodes):
            _check_shared(a, nodes, want, before)
        # Quiet now: every request the nodes had answered is one Triton counted, from both protocols.
        answered = [n.requests_to(a) - s for n, s in zip(nodes, sent, strict=True)]
        assert min(answered) >= 6, f"requests answered per node: {answered}"
        _wait(lambda: a.batching()[0] - before[0] == sum(answered), 10, f"A counts {answered} requests", nodes)
        try:
            with running(nodes):
                _check_failover(a, b, nodes, want, lambda: os.killpg(a.proc.pid, signal.SIGKILL), "killed")
                _check_failover(b, c, nodes, want, lambda: os.killpg(b.proc.pid, signal.SIGSTOP), "frozen")
        finally:
            os.killpg(b.proc.pid, signal.SIGCONT)
        assert [n.url_for(b) for n in nodes] == [b.url, b.grpc_url]
        for node in nodes:
            stats = node.detector.stats()  # type: ignore[attr-defined]
            assert stats["failovers"] == 2 and stats["active"] == node.url_for(c)
            assert [s["failures"] > 0 for s in stats["servers"]] == [True, True, False]


@pytest.mark.slow
def test_engine_keeps_running_when_every_triton_server_is_gone(tmp_path: Path, square_mp4: Path) -> None:
    """The only server is killed under a running engine: frames are dropped and /healthz says why, the loop lives
    on (camera status keeps being published), and it stops cleanly."""
    import yaml

    from monitor.config import load_config
    from monitor.engine import Engine
    from monitor.store.incidents import camera_key

    repo = write_test_repository(tmp_path / "repo", ServingSettings(queue_delay_us=5_000, kind="KIND_CPU"))
    with standins(repo, tmp_path, 1) as (server,):
        path = tmp_path / "streams.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "data_dir": str(tmp_path / "data"),
                    "status_interval_s": 1,
                    "detector": {"model": server.url, "task": "pose", "imgsz": IMGSZ, "calibrate": False},
                    "cameras": {"plaza": {"url": str(square_mp4), "detect_fps": 2}},
                }
            ),
            encoding="utf-8",
        )
        engine = Engine(load_config(path))
        runner = threading.Thread(target=engine.run, kwargs={"duration_s": 40}, daemon=True)
        runner.start()
        try:
            deadline = time.monotonic() + 60
            while not any(c.detections for c in engine.cameras.values()):
                assert time.monotonic() < deadline, "no detection through the server"
                assert runner.is_alive(), "the engine stopped"
                time.sleep(0.2)
            server.kill()
            deadline = time.monotonic() + 30
            while engine.health().detector_problem is None:
                assert time.monotonic() < deadline, "the failed detection is not reported"
                assert runner.is_alive(), "the engine died with its detector"
                time.sleep(0.2)
            assert engine.health().degraded
            assert engine.store is not None
            client = engine.store.r

            def updated() -> float:
                return float(client.hget(camera_key("plaza"), "updated_ts") or 0)

            before = updated()
            time.sleep(3)
            assert runner.is_alive(), "the engine died with its detector"
            assert updated() > before, "camera status stopped"
            assert engine.cameras["plaza"].dropped > 0
        finally:
            engine.stop_event.set()
            runner.join(30)
        assert not runner.is_alive()
