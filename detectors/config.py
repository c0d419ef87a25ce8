"""Detector settings, validated once at config load so a typo fails at startup, not mid-stream."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Backend = Literal["auto", "torch", "onnxruntime", "openvino", "tensorrt"]
Precision = Literal["auto", "fp32", "fp16", "bf16", "int8"]


class TilingConfig(BaseModel):
    """Split each frame into overlapping tiles so small, far people reach the model at a usable size.

    A 768x576 frame at imgsz 640 shrinks a 60 px person to 50 px, below what the nano model finds;
    a 2x2 grid at imgsz 640 enlarges the same person to ~90 px, like imgsz 1280 but with 640 models.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    grid: tuple[int, int] = Field(
        default=(2, 2), description="Tiles as [columns, rows]; [2, 2] suits 4:3 and 16:9 wide views."
    )
    overlap: float = Field(
        default=0.2,
        ge=0.0,
        lt=0.9,
        description=(
            "Fraction of a tile shared with its neighbour. Make it at least one far person's height/width in "
            "tile units, so every such person is whole in some tile (boxes cut at an inner tile border are "
            "dropped when another tile sees the person whole)."
        ),
    )
    full_frame: bool = Field(
        default=True,
        description="Also run the whole frame: finds people too big for one tile (costs one more inference).",
    )

    @model_validator(mode="after")
    def _positive_grid(self) -> TilingConfig:
        if self.grid[0] < 1 or self.grid[1] < 1 or self.grid[0] * self.grid[1] > 64:
            raise ValueError(f"tiles.grid must be 1..64 tiles of [cols, rows] >= 1, got {list(self.grid)}")
        return self


class DetectorConfig(BaseModel):
    """How to build the person detector; frozen so a running pipeline cannot drift from its config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | tuple[str, ...] | None = Field(
        default=None,
        description=(
            "None = the offline default yolo11n-pose.pt (fetched from PyPI, see models/PROVENANCE.md). "
            "Otherwise any model Ultralytics loads: a .pt/.onnx file, an OpenVINO export directory, a "
            "TensorRT .engine (relative paths resolve against the config file's directory), or shared Triton "
            "servers: one URL such as http://host:8000/yolo or grpc://host:8001/yolo, or a list (may mix both), "
            "tried in order (failover within 5 s; uint8 frames on the wire; the model repository from "
            "`python -m detectors.triton_repo`; set `task`)."
        ),
    )
    task: Literal["detect", "pose"] | None = Field(
        default=None,
        description=(
            "Model task. Needed for Triton URLs and for exports whose metadata Ultralytics cannot read; "
            "None lets Ultralytics infer it from the checkpoint."
        ),
    )
    imgsz: int = Field(
        default=960,
        gt=0,
        multiple_of=32,
        description=(
            "Inference size (long side, pixels, multiple of 32). The nano model misses small people at low "
            "sizes: on the 768x576 sample footage it finds a mean 0.6 people/frame at 640, 3.3 at 960 and "
            "5.3 at 1280 (closest to the truth) for 50/110/200 ms per frame on one CPU core (see "
            "bench/detector_notes.md). 960 is the default the current tests are calibrated to; use 1280 "
            "(with iou 0.45) for wide views where people are under ~80 px tall."
        ),
    )
    confidence: float = Field(
        default=0.35,
        ge=0.0,
        le=1.0,
        description="Minimum person confidence; 0.35 keeps people cut off at the image edge (scored 0.45-0.7).",
    )
    iou: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description=(
            "NMS IoU threshold. Real neighbours on the sample footage overlap at most ~0.31, so lower values "
            "risk merging people in a group; at imgsz 1280 use 0.45 to drop duplicate part-body boxes on "
            "close-ups (IoU ~0.46 with the body box)."
        ),
    )
    device: str | None = Field(
        default=None,
        description=(
            "Torch device for Ultralytics models ('cpu', 'cuda:0', ...). None = cuda:0 when torch sees a CUDA GPU "
            "(see `backend`), else the CPU; 'cpu' keeps `backend: auto` on the CPU runtimes."
        ),
    )
    max_batch: int = Field(
        default=8,
        ge=1,
        description="Most images per predict() call; bounds memory when many cameras are batched together.",
    )
    backend: Backend = Field(
        default="auto",
        description=(
            "Inference runtime for a .pt source model. 'auto' picks TensorRT when torch sees a CUDA GPU and "
            "tensorrt is installed, else torch via Ultralytics on that GPU (cuda:0 unless `device` names "
            "another), else OpenVINO, else ONNX Runtime, else torch on the CPU, and logs which and why (an H200 "
            "without tensorrt: torch fp16 on the GPU, 633 frames/s at batch 32 on one core, vs 150 for ONNX Runtime "
            "on 12 CPU cores). `device: cpu` keeps 'auto' off the GPU. The ONNX/OpenVINO/TensorRT exports are built "
            "once and cached next to the source model (keyed by its sha256 and the export settings). "
            "OpenVINO/ONNX Runtime run as bare sessions with NumPy pre/post-processing (~17-30 ms vs ~76 ms per "
            "1080p frame at 640 for Ultralytics .pt on one CPU core). Other model files always use Ultralytics; "
            "Triton URLs run on those servers whatever this says."
        ),
    )
    precision: Precision = Field(
        default="auto",
        description=(
            "Numeric precision. On a CUDA device: 'auto' = fp16 (torch via Ultralytics with half=True for a .pt "
            "model; TensorRT engines are built fp16), 'fp32' forces full precision (TensorRT engine built fp32), "
            "'fp16' demands a CUDA device and fails at startup without one (fp16 finds the same people as fp32 on "
            "the sample footage, bench/RESULTS.md 'GPU path'). On the CPU with OpenVINO: 'auto' = int8 when the "
            "CPU has VNNI/AMX-INT8 or AVX2 (avx512_vnni, avx_vnni, amx_int8, avx2) and a cached INT8 model (`python -m "
            "detectors.int8 --imgsz N --source CAMERA_FILE_OR_URL`) passed its accuracy gate, else bf16 where "
            "bf16 is native (avx512_bf16, amx_bf16), else fp32 (bench/RESULTS.md 'CPU precision'); the choice "
            "and why is logged at startup. "
            "'bf16' needs native bf16; 'int8' uses the gated INT8 "
            "model whatever the flags (falls back like auto when there is none or it failed the gate); 'fp32' "
            "forces f32. ONNX Runtime and torch on the CPU always run fp32 ('bf16'/'int8' need OpenVINO)."
        ),
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Threads per inference stream for OpenVINO/ONNX Runtime. None = 1: on small CPUs several "
            "1-thread streams beat one multi-thread stream (OpenVINO on 2 cores: 2x1 gives 121 frames/s at "
            "640x384, 1x1 gives 65; bench/RESULTS.md)."
        ),
    )
    streams: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Inference requests run at the same time for OpenVINO/ONNX Runtime; a batch of cameras is split "
            "across them. None = one per `threads` worth of CPU cores, so detection can use every core while "
            "the decoders take what they need."
        ),
    )
    tiles: TilingConfig | None = Field(
        default=None,
        description=(
            "Detect on overlapping tiles (plus the full frame) and merge, for people 40-80 px tall; e.g. "
            "{grid: [2, 2], overlap: 0.2}. Costs one inference per tile; works with every backend."
        ),
    )
    calibrate: bool = Field(
        default=True,
        description=(
            "Pick imgsz, tiles and confidence per camera from the heights of the people in its first minutes "
            "(detectors/calibration.py; `monitor calibrate CAMERA` reruns it); the global imgsz/confidence are "
            "used until then. Off for a camera whose own `detector:` sets imgsz, tiles or confidence, or with false."
        ),
    )

    @model_validator(mode="after")
    def _server_list(self) -> DetectorConfig:
        """A list of models only makes sense as Triton servers to fail over between."""
        if isinstance(self.model, tuple) and (
            not self.model or not all(m.startswith(("http://", "grpc://")) for m in self.model)
        ):
            raise ValueError(
                "detector.model as a list must be Triton URLs (http://host:8000/MODEL, grpc://host:8001/MODEL, ...)"
            )
        return self
