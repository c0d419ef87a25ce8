"""OpenVINO CPU session for an exported YOLO model, compiled per input size.

The IR keeps dynamic axes; each distinct input height/width (one per camera aspect) is compiled
once with a static size and a dynamic batch (compile 0.15 s; measured 16.7 vs 17.0 ms per
384x640 frame against a fully dynamic model, 15.5 fully static).
Thread pinning is off: with pinning, two single-thread OpenVINO streams end up sharing ONE core
(28 instead of 56 frames/s on 2 cores, measured in the project's shared perf notes).
``streams`` infer requests per shape run at the same time from different threads (the Python
binding releases the GIL during ``infer``), each on ``threads`` threads.
"""

from __future__ import annotations

import importlib
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray


class OpenVinoRunner:
    """A bare ``openvino`` compiled model per input shape, with pinning off and explicit threads."""

    def __init__(self, path: Path, threads: int, streams: int = 1, precision: str | None = None) -> None:
        """Read the IR; compilation happens per input shape on first use.

        ``precision`` (e.g. "f32") overrides OpenVINO's CPU default (bf16 where the CPU has it).
        """
        ov: Any = importlib.import_module("openvino")  # deferred, untyped: optional dependency
        self._core: Any = ov.Core()
        self._model: Any = self._core.read_model(str(path))
        self._threads = threads
        self._streams = streams
        self._config: dict[str, Any] = {
            "ENABLE_CPU_PINNING": False,
            "INFERENCE_NUM_THREADS": threads * streams,
            "NUM_STREAMS": streams,
        }
        if precision is not None:
            self._config["INFERENCE_PRECISION_HINT"] = precision
        self._compiled: dict[tuple[int, int], queue.SimpleQueue[Any]] = {}
        self._lock = threading.Lock()
        self._version = str(ov.get_version())
        self._precision = precision

    @property
    def streams(self) -> int:
        """Concurrent calls this runner serves (one infer request each)."""
        return self._streams

    def _requests(self, hw: tuple[int, int]) -> queue.SimpleQueue[Any]:
        with self._lock:
            idle = self._compiled.get(hw)
            if idle is None:
                model = self._model.clone()
                model.reshape({model.inputs[0].any_name: [-1, 3, hw[0], hw[1]]})
                compiled = self._core.compile_model(model, "CPU", self._config)
                if self._precision is None:
                    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
                    self._precision = str(hint.to_string() if hasattr(hint, "to_string") else hint)
                idle = self._compiled[hw] = queue.SimpleQueue()
                for _ in range(self._streams):
                    idle.put(compiled.create_infer_request())
            return idle

    def __call__(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Raw head output for an (N, 3, H, W) batch; blocks while all ``streams`` requests are busy."""
        idle = self._requests((batch.shape[2], batch.shape[3]))
        request = idle.get()
        try:
            request.infer({0: batch})
            return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)
        finally:
            idle.put(request)

    def describe(self) -> str:
        """Runtime version, threads, precision and how many input shapes are compiled."""
        return (
            f"openvino {self._version} CPU streams={self._streams}x{self._threads} threads pinning=off "
            f"precision={self._precision or 'default'} sizes={len(self._compiled)}"
        )
