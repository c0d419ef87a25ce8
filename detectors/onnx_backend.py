"""ONNX Runtime CPU session for an exported YOLO model (dynamic axes: any batch, size and aspect).

``InferenceSession.run`` is thread-safe and releases the GIL, so ``streams`` threads share one session.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray


class OnnxRuntimeRunner:
    """A bare ``onnxruntime.InferenceSession``; threads are explicit so the decoders keep their cores."""

    def __init__(self, path: Path, threads: int, streams: int = 1) -> None:
        """Open the session with full graph optimisation and no busy-spinning worker threads."""
        ort: Any = importlib.import_module("onnxruntime")  # deferred, untyped: optional dependency
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # spinning steals decode CPU
        self._session: Any = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._threads = threads
        self._streams = streams
        self._version = str(ort.__version__)

    @property
    def streams(self) -> int:
        """Concurrent calls this runner serves."""
        return self._streams

    def __call__(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Raw head output for an (N, 3, H, W) batch."""
        (out,) = self._session.run(None, {self._input: batch})[:1]
        return np.asarray(out, dtype=np.float32)

    def describe(self) -> str:
        """Runtime version and thread count."""
        return f"onnxruntime {self._version} CPU streams={self._streams}x{self._threads} threads"
