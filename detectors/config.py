"""Detector settings, validated once at config load so a typo fails at startup, not mid-stream."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DetectorConfig(BaseModel):
    """How to build the person detector; frozen so a running pipeline cannot drift from its config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(
        default=None,
        description=(
            "None = the offline default yolo11n-pose.pt (fetched from PyPI, see models/PROVENANCE.md). "
            "Otherwise any model Ultralytics loads: a .pt/.onnx file, an OpenVINO export directory, a "
            "TensorRT .engine (relative paths resolve against the config file's directory), or a Triton "
            "URL such as http://host:8000/yolo."
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
        description="Torch device for .pt models ('cpu', 'cuda:0', ...); None lets Ultralytics choose.",
    )
    max_batch: int = Field(
        default=8,
        ge=1,
        description="Most images per predict() call; bounds memory when many cameras are batched together.",
    )
