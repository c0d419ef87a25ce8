"""Benchmark: detection through the stand-in Triton server vs local ONNX Runtime, bytes on the wire, batch merging.

Not a test. Writes the default model's Triton repository (uint8 input) into a temporary directory, starts the
stand-in server (tests/support/triton.py: real tritonserver via pytriton, ONNX Runtime on 1 CPU thread) and
measures, at imgsz 640 on 768x576 frames of sample_videos/square.mp4:

* ms per frame for one frame per call: local ONNX Runtime (1 thread) vs through the server (same runtime, plus
  HTTP on loopback, Triton's batcher and the Python backend hop);
* the HTTP request body per frame: uint8 as sent vs the float32 tensor Ultralytics' Triton client would send,
  and the response (the raw head output);
* two nodes (threads, 2 cameras = 2 frames per request each) for ``--seconds``: Triton's mean batch from its
  own metrics, per queue delay.

    PYTHONPATH=. .venv/bin/python bench/triton_servers.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors import DetectorConfig, create_detector  # noqa: E402
from detectors.postprocess import Letterbox, preprocess  # noqa: E402
from detectors.triton import INPUT, TritonDetector  # noqa: E402
from detectors.triton_repo import ServingSettings  # noqa: E402
from tests.support.triton import standins, write_test_repository  # noqa: E402

IMGSZ = 640


def frames(n: int) -> list[np.ndarray[Any, Any]]:
    out = []
    with av.open(str(ROOT / "sample_videos" / "square.mp4")) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= 500 and i % 10 == 0:
                out.append(frame.to_ndarray(format="bgr24"))
            if len(out) == n:
                return out
    return out


def ms_per_frame(detector: Any, images: list[np.ndarray[Any, Any]], rounds: int) -> float:
    detector.detect(images[:1])
    started = time.perf_counter()
    for i in range(rounds):
        detector.detect([images[i % len(images)]])
    return (time.perf_counter() - started) / rounds * 1e3


def body_bytes(image: np.ndarray[Any, Any]) -> tuple[int, int, int]:
    """(uint8 request body, float32 request body, response tensor bytes) for one frame."""
    http: Any = importlib.import_module("tritonclient.http")
    plan = Letterbox.plan(image.shape[:2], IMGSZ, 32)
    sizes = []
    for name, array, dtype in (
        (INPUT, plan.padded(image)[None], "UINT8"),
        ("images", preprocess([image], [plan]), "FP32"),
    ):
        request = http.InferInput(name, list(array.shape), dtype)
        request.set_data_from_numpy(array, binary_data=True)
        body, _ = http.InferenceServerClient.generate_request_body([request])
        sizes.append(len(body))
    anchors = sum((plan.input_hw[0] // s) * (plan.input_hw[1] // s) for s in (8, 16, 32))
    return sizes[0], sizes[1], 56 * anchors * 4  # yolo11n-pose: 56 float32 rows per anchor


def two_nodes(url: str, images: list[np.ndarray[Any, Any]], seconds: float) -> tuple[int, dict[str, Any]]:
    """Frames detected by two nodes in ``seconds``, and node 1's stats."""
    config = DetectorConfig(model=url, task="pose", imgsz=IMGSZ)
    nodes = [TritonDetector(config, [url]), TritonDetector(config, [url])]
    done = [0, 0]
    stop = threading.Event()

    def run(k: int) -> None:
        while not stop.is_set():
            nodes[k].detect(images[2 * k : 2 * k + 2])
            done[k] += 2

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(done), nodes[0].stats()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    images = frames(8)
    up8, f32, response = body_bytes(images[0])
    print(f"per frame on the wire: request uint8 {up8} B, float32 {f32} B; response {response} B (raw head)")
    local = create_detector(DetectorConfig(imgsz=IMGSZ, backend="onnxruntime", threads=1, streams=1))
    print(f"local onnxruntime 1 thread: {ms_per_frame(local, images, args.rounds):.1f} ms/frame")
    with tempfile.TemporaryDirectory() as tmp:
        for delay_us in (5_000, 100_000):
            repo = write_test_repository(
                Path(tmp) / f"repo{delay_us}", ServingSettings(queue_delay_us=delay_us, kind="KIND_CPU")
            )
            with standins(repo, Path(tmp) / f"run{delay_us}", 1) as (server,):
                config = DetectorConfig(model=server.url, task="pose", imgsz=IMGSZ)
                single = TritonDetector(config, [server.url])
                print(f"queue delay {delay_us} us, one node: {ms_per_frame(single, images, args.rounds):.1f} ms/frame")
                before = server.batching()
                count, stats = two_nodes(server.url, images, args.seconds)
                req, inf, execs = (a - b for a, b in zip(server.batching(), before, strict=True))
                lat = stats["servers"][0]
                print(
                    f"queue delay {delay_us} us, two nodes x 2 frames: {count / args.seconds:.1f} frames/s, "
                    f"{req:.0f} requests in {execs:.0f} executions: mean batch {inf / execs:.2f} frames "
                    f"({req / execs:.2f} requests); node latency mean {lat['latency_ms_mean']:.0f} ms, "
                    f"p95 {lat['latency_ms_p95']:.0f} ms"
                )


if __name__ == "__main__":
    main()
