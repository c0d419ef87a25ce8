"""What machine a benchmark ran on: CPU model and the flags that decide INT8/bf16/f32 speed, for every result.

A ratio measured where OpenVINO runs bf16 (AVX512-BF16) does not carry to a CPU without it (f32 there), so
each bench output starts with ``header()`` and its JSON carries ``machine()``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Any

from detectors.precision import REPORTED_FLAGS, read_cpu_info


@dataclass(frozen=True, slots=True)
class Machine:
    """CPU model, which of ``REPORTED_FLAGS`` it has and lacks, usable cores, runtime versions."""

    cpu: str
    flags: list[str]
    absent: list[str]
    cores: int
    versions: dict[str, str]
    isa_cap: str | None  # ONEDNN_MAX_CPU_ISA: an emulated CPU kind (flags and absent already follow it)
    isa_cap_by: str  # the variable that set it (ONEDNN_MAX_CPU_ISA, or the legacy DNNL_MAX_CPU_ISA)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def this_machine() -> Machine:
    """Read /proc/cpuinfo, the affinity mask and the installed runtimes."""
    cpu = read_cpu_info()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    versions = {d: _version(d) for d in ("openvino", "onnxruntime", "nncf", "ultralytics", "torch")}
    absent = [f for f in REPORTED_FLAGS if f not in cpu.flags]
    return Machine(cpu.model, cpu.reported(), absent, cores, versions, cpu.isa_cap, cpu.isa_cap_by)


def machine() -> dict[str, Any]:
    """``this_machine()`` as plain JSON data."""
    return asdict(this_machine())


def header() -> str:
    """One line for the head of a result, e.g. "cpu: AMD EPYC, 2 cores; flags: avx512_bf16 ...; absent: ..."."""
    m = this_machine()
    versions = ", ".join(f"{k} {v}" for k, v in m.versions.items())
    flags, absent = " ".join(m.flags) or "none", " ".join(m.absent) or "none"
    cap = f" (oneDNN capped at {m.isa_cap} by {m.isa_cap_by}: both sides run its kernels)" if m.isa_cap else ""
    return f"cpu: {m.cpu}, {m.cores} cores; flags: {flags}; absent: {absent}{cap}; {versions}"
