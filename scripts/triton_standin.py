"""Stand-in Triton server for machines without a GPU: the real ``tritonserver`` serving the real model on CPU.

Runs under Debian's /usr/bin/python3.11 in ``.triton-venv`` (``scripts/setup.sh --test`` creates it):
``nvidia-pytriton`` bundles a real ``tritonserver`` binary whose Python backend forwards each *batch*
(after Triton's own dynamic batcher has merged requests from every client) to ``infer`` below, which
runs the same uint8-input ONNX model ``detectors.triton_repo`` writes for NVIDIA's image, with
ONNX Runtime on the CPU. Batch size and queue delay are read from that repository's config.pbtxt,
so the stand-in batches like the real deployment. Health (/v2/health/ready), inference (HTTP/gRPC)
and Prometheus metrics (/metrics) are Triton's own.

    .triton-venv/bin/python scripts/triton_standin.py --repo OUT_DIR --http-port 8000 --grpc-port 8001 \
        --metrics-port 8002

Standalone on purpose: the venv holds only pytriton, onnxruntime and numpy, not the project.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

INPUT, OUTPUT = "images_u8", "output0"  # detectors.triton_repo.INPUT / OUTPUT


def read_setting(config: str, key: str) -> int:
    """One integer setting from config.pbtxt text (the few this server needs; no protobuf parser here)."""
    found = re.search(rf"\b{key}\s*:\s*(\d+)", config)
    if found is None:
        raise SystemExit(f"config.pbtxt has no {key}")
    return int(found.group(1))


def output_rows(config: str) -> int:
    """The head's row count from the output's ``dims: [ ROWS, -1 ]``."""
    found = re.search(rf'name:\s*"{OUTPUT}"[^}}]*dims:\s*\[\s*(\d+)', config)
    if found is None:
        raise SystemExit(f"config.pbtxt has no dims for {OUTPUT}")
    return int(found.group(1))


def main() -> None:
    """Parse arguments, load the model and serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, required=True, help="model repository from detectors.triton_repo")
    parser.add_argument("--model", default="yolo")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--workspace", type=Path, help="pytriton's sockets and server copy (default: a temp dir)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = (args.repo / args.model / "config.pbtxt").read_text(encoding="utf-8")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        str(args.repo / args.model / "1" / "model.onnx"), opts, providers=["CPUExecutionProvider"]
    )

    @batch  # type: ignore[misc]
    def infer(**inputs: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
        (out,) = session.run([OUTPUT], {INPUT: inputs[INPUT]})
        return {OUTPUT: np.asarray(out, np.float32)}

    triton_config = TritonConfig(
        http_address=args.address,
        http_port=args.http_port,
        grpc_address=args.address,
        grpc_port=args.grpc_port,
        metrics_address=args.address,
        metrics_port=args.metrics_port,
        allow_metrics=True,
        allow_cpu_metrics=False,
        allow_gpu_metrics=False,
    )
    batcher = DynamicBatcher(max_queue_delay_microseconds=read_setting(config, "max_queue_delay_microseconds"))
    with Triton(config=triton_config, workspace=args.workspace) as triton:
        triton.bind(
            model_name=args.model,
            infer_func=infer,
            inputs=[Tensor(name=INPUT, dtype=np.uint8, shape=(-1, -1, 3))],
            outputs=[Tensor(name=OUTPUT, dtype=np.float32, shape=(output_rows(config), -1))],
            config=ModelConfig(max_batch_size=read_setting(config, "max_batch_size"), batcher=batcher),
            strict=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
