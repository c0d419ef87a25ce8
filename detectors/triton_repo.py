"""Write a Triton model repository for a YOLO model whose network input is uint8 camera pixels.

A float32 (1, 3, 640, 640) input is 4.9 MB per frame on the wire; the same letterboxed frame as uint8
BGR is 1.2 MB (0.9 MB for a 4:3 640x480 one). So the exported ONNX graph gets a prefix that takes
(N, H, W, 3) uint8 BGR, exactly the bytes OpenCV/PyAV hand us, and turns it into the (N, 3, H, W) RGB
float 0..1 tensor the network was traced with: Gather (BGR -> RGB), Transpose (NHWC -> NCHW, still on
uint8, 4x less memory traffic than on floats), Cast to float, Mul by float32(1/255). The same
arithmetic as ``Letterbox.apply``, so a server gives the local ONNX backend's numbers.

Usage: ``python -m detectors.triton_repo OUT_DIR`` (default model) -> ``OUT_DIR/yolo/config.pbtxt`` and
``OUT_DIR/yolo/1/model.onnx`` for NVIDIA's Triton image (onnxruntime backend). See README "Triton".
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from detectors.export import ExportedModel, ExportSettings, ensure_export
from detectors.model_fetch import default_model_path, ensure_default_model

log = logging.getLogger(__name__)

INPUT = "images_u8"  # (N, H, W, 3) uint8 BGR, letterboxed to multiples of the model stride
OUTPUT = "output0"  # Ultralytics' raw head: (N, 4 + classes + keypoints, anchors) float32
MODEL_NAME = "yolo"
SCALE = np.float32(1 / 255)  # the constant Letterbox.apply multiplies by (not a Div: bit-identical inputs)


@dataclass(frozen=True, slots=True)
class ServingSettings:
    """What config.pbtxt says about batching and placement; the stand-in server reads the same file."""

    max_batch_size: int = 8
    queue_delay_us: int = 5000  # how long Triton holds a request to merge it with other nodes' requests
    instances: int = 1
    kind: str = "KIND_GPU"  # KIND_CPU for a CPU-only Triton
    tensorrt_fp16: bool = False  # let ONNX Runtime hand the graph to TensorRT inside Triton


_DEFAULTS = ServingSettings()


def add_uint8_input(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose only input is (N, H, W, 3) uint8 BGR named ``INPUT`` (see module doc)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    if len(graph.input) != 1:
        raise ValueError(f"expected one network input, got {[i.name for i in graph.input]}")
    old = graph.input[0]
    dims = old.type.tensor_type.shape.dim
    if old.type.tensor_type.elem_type != TensorProto.FLOAT or len(dims) != 4 or dims[1].dim_value != 3:
        raise ValueError(f"expected a float (N, 3, H, W) input, got {old}")
    new = helper.make_tensor_value_info(INPUT, TensorProto.UINT8, ["batch", "height", "width", 3])
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([2, 1, 0], np.int64), "u8_bgr_to_rgb"),
            numpy_helper.from_array(np.array(SCALE, np.float32), "u8_scale"),
        ]
    )
    prefix = [
        helper.make_node("Gather", [INPUT, "u8_bgr_to_rgb"], ["u8_rgb"], axis=3, name="u8_bgr_to_rgb"),
        helper.make_node("Transpose", ["u8_rgb"], ["u8_nchw"], perm=[0, 3, 1, 2], name="u8_nchw"),
        helper.make_node("Cast", ["u8_nchw"], ["u8_float"], to=TensorProto.FLOAT, name="u8_float"),
        helper.make_node("Mul", ["u8_float", "u8_scale"], [old.name], name="u8_scale"),
    ]
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(prefix + nodes)
    graph.input.remove(old)
    graph.input.append(new)
    onnx.checker.check_model(out)
    return out


def output_channels(exported: ExportedModel) -> int:
    """Rows of the raw head: box (4) + one score per class + keypoint values (pose models)."""
    kpt = math.prod(exported.kpt_shape) if exported.kpt_shape else 0
    return 4 + len(exported.names) + kpt


def config_pbtxt(name: str, channels: int, serving: ServingSettings) -> str:
    """Triton's model configuration for the uint8-input ONNX model (onnxruntime backend)."""
    accel = ""
    if serving.tensorrt_fp16:
        accel = (
            "optimization { execution_accelerators { gpu_execution_accelerator: [ {\n"
            '  name: "tensorrt"\n'
            '  parameters { key: "precision_mode" value: "FP16" }\n'
            '  parameters { key: "trt_engine_cache_enable" value: "true" }\n'
            "} ] } }\n"
        )
    return (
        f'name: "{name}"\n'
        'backend: "onnxruntime"\n'
        f"max_batch_size: {serving.max_batch_size}\n"
        f'input [ {{ name: "{INPUT}" data_type: TYPE_UINT8 dims: [ -1, -1, 3 ] }} ]\n'
        f'output [ {{ name: "{OUTPUT}" data_type: TYPE_FP32 dims: [ {channels}, -1 ] }} ]\n'
        f"dynamic_batching {{ max_queue_delay_microseconds: {serving.queue_delay_us} }}\n"
        f"instance_group [ {{ count: {serving.instances} kind: {serving.kind} }} ]\n"
        f"{accel}"
    )


def write_repository(out: Path, exported: ExportedModel, serving: ServingSettings, name: str = MODEL_NAME) -> Path:
    """``out/<name>/config.pbtxt`` and ``out/<name>/1/model.onnx`` from an ONNX export; returns the model dir."""
    model_dir = out / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(add_uint8_input(onnx.load(str(exported.path))), str(model_dir / "1" / "model.onnx"))
    (model_dir / "config.pbtxt").write_text(config_pbtxt(name, output_channels(exported), serving), encoding="utf-8")
    return model_dir


def main(argv: list[str] | None = None) -> int:
    """``python -m detectors.triton_repo OUT_DIR``: export the model to ONNX (cached) and write the repository."""
    parser = argparse.ArgumentParser(description="Write a Triton model repository (uint8 input) for a YOLO model.")
    parser.add_argument("out", type=Path, help="model repository directory (created)")
    parser.add_argument("--source", type=Path, help=".pt model (default: the offline yolo11n-pose.pt)")
    parser.add_argument("--name", default=MODEL_NAME, help="model name in URLs, e.g. http://host:8000/NAME")
    parser.add_argument("--max-batch", type=int, default=_DEFAULTS.max_batch_size)
    parser.add_argument("--queue-delay-us", type=int, default=_DEFAULTS.queue_delay_us)
    parser.add_argument("--instances", type=int, default=_DEFAULTS.instances)
    parser.add_argument("--cpu", action="store_true", help="KIND_CPU instances (Triton without a GPU)")
    parser.add_argument("--tensorrt-fp16", action="store_true", help="ONNX Runtime's TensorRT provider, fp16")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    source = args.source or ensure_default_model(default_model_path().parent)
    exported = ensure_export(source, ExportSettings("onnx", dynamic=True))
    serving = ServingSettings(
        args.max_batch, args.queue_delay_us, args.instances, "KIND_CPU" if args.cpu else "KIND_GPU", args.tensorrt_fp16
    )
    model_dir = write_repository(args.out, exported, serving, args.name)
    print(f"wrote {model_dir} (input {INPUT} uint8 NHWC BGR, max_batch_size {serving.max_batch_size})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
