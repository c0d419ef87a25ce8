"""Which numeric precision OpenVINO runs on this CPU: INT8, bf16 or f32, with the reason logged.

INT8 pays where the CPU has 8-bit dot-product instructions (AVX-512 VNNI, AVX-VNNI, AMX-INT8), and also on
plain AVX2 (oneDNN's u8 x s8 kernels: INT8 1.7x faster than f32 there, bench/RESULTS.md), once a quantized
model passed the accuracy gate (``detectors.int8``); bf16 where bf16 is native (AVX512-BF16, AMX-BF16:
OpenVINO's own CPU default there); f32 otherwise. ``choose_cpu_precision`` is pure (unit-tested over flag
sets); ``read_cpu_info`` reads /proc/cpuinfo and applies oneDNN's ISA cap (``ONEDNN_MAX_CPU_ISA``), which the
kernels obey but OpenVINO's own bf16 default does not (it then runs bf16 on f32 kernels, 4x slower).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from detectors.base import DetectorError
from detectors.config import DetectorConfig, Precision

log = logging.getLogger(__name__)
CpuPrecision = Literal["int8", "bf16", "f32"]
# Where INT8 pays, best first: 8-bit dot products, else AVX2's u8 x s8 multiply-add (still 1.7x f32).
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "avx2")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# What benchmark results record: every flag that changes which precision is fast here.
REPORTED_FLAGS = ("avx2", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
ISA_CAP_VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
# oneDNN's ISA cap (its names, lower case) -> the precision-relevant flags its kernels may still use.
_AVX512 = ("avx2", "avx512f")
_ISA_CAPS: dict[str, tuple[str, ...]] = {
    "sse41": (),
    "avx": (),
    "avx2": ("avx2",),
    "avx2_vnni": ("avx2", "avx_vnni"),
    "avx2_vnni_2": ("avx2", "avx_vnni"),
    "avx512_core": _AVX512,
    "avx512_core_vnni": (*_AVX512, "avx512_vnni"),
    "avx512_core_bf16": (*_AVX512, "avx512_vnni", "avx512_bf16"),
    "avx512_core_fp16": (*_AVX512, "avx512_vnni", "avx512_bf16"),
    "avx10_1_512": (*_AVX512, "avx512_vnni", "avx512_bf16"),
}
_CAPPED = frozenset((*REPORTED_FLAGS, "avx512f"))  # what a cap can take away (others are left as they are)
_warned_caps: set[str] = set()  # an unknown cap is logged once, not at each look (the engine looks every minute)


@dataclass(frozen=True, slots=True)
class CpuInfo:
    """The CPU's model name and its feature flags (as /proc/cpuinfo spells them)."""

    model: str
    flags: frozenset[str]
    isa_cap: str | None = None  # e.g. "AVX2_VNNI" from ONEDNN_MAX_CPU_ISA: ``flags`` are already cut to it
    isa_cap_by: str = ISA_CAP_VARS[0]  # the variable that set the cap (oneDNN still reads the legacy DNNL_ name)

    def reported(self) -> list[str]:
        """The precision-relevant flags present, in ``REPORTED_FLAGS`` order."""
        return [f for f in REPORTED_FLAGS if f in self.flags]

    def summary(self) -> str:
        """One line, e.g. "AMD EPYC; avx2 avx512_bf16 avx512_vnni avx_vnni" (or "none of ...")."""
        present = self.reported()
        line = f"{self.model}; {' '.join(present) if present else 'none of ' + ' '.join(REPORTED_FLAGS)}"
        return f"{line} (capped at {self.isa_cap} by {self.isa_cap_by})" if self.isa_cap else line


def apply_isa_cap(info: CpuInfo, environ: Mapping[str, str]) -> CpuInfo:
    """``info`` with the flags oneDNN may not use under ``ONEDNN_MAX_CPU_ISA`` (or ``DNNL_MAX_CPU_ISA``)
    removed: the precision choice must follow the kernels that will run. ``ALL``, ``DEFAULT``, unset or a value
    oneDNN does not know (it ignores those; logged, since it is likely a typo): as is."""
    var, cap = next(((v, environ[v].strip()) for v in ISA_CAP_VARS if environ.get(v, "").strip()), ("", ""))
    if cap.lower() in ("", "all", "default") or cap.lower().startswith(("avx512_core_amx", "avx10_1_512_amx")):
        return info
    allowed = _ISA_CAPS.get(cap.lower())
    if allowed is None:
        if cap not in _warned_caps:
            _warned_caps.add(cap)
            log.warning("%s=%r is not a oneDNN ISA (%s, ALL): ignored", var, cap, ", ".join(_ISA_CAPS).upper())
        return info
    return CpuInfo(info.model, frozenset(f for f in info.flags if f not in _CAPPED or f in allowed), cap.upper(), var)


def parse_cpuinfo(text: str) -> CpuInfo:
    """The first processor's model name and flags from /proc/cpuinfo text (x86 "flags", ARM "Features")."""
    model, flags = "unknown CPU", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown CPU":
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model, flags)


def read_cpu_info(path: Path = Path("/proc/cpuinfo"), environ: Mapping[str, str] = os.environ) -> CpuInfo:
    """This machine's CPU as oneDNN's kernels see it (unknown, no flags, where /proc/cpuinfo is unreadable:
    f32 is then chosen)."""
    try:
        info = parse_cpuinfo(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        info = CpuInfo("unknown CPU", frozenset())
    return apply_isa_cap(info, environ)


@dataclass(frozen=True, slots=True)
class Int8Verdict:
    """What the accuracy gate said about the cached INT8 model (``detectors.int8`` stores it as gate.json)."""

    passed: bool
    summary: str  # e.g. "MAE 0.05 vs 0.00 f32, recall 0.990 vs 1.000 (agreement with f32, 40 frames)"
    confidence_scale: float = 1.0  # INT8 runs at this times the configured confidence (detectors.int8_gate)


def int8_instructions(flags: frozenset[str]) -> str | None:
    """The best of ``INT8_FLAGS`` the CPU has (None: INT8 would not pay here)."""
    return next((flag for flag in INT8_FLAGS if flag in flags), None)


def choose_cpu_precision(
    flags: frozenset[str], requested: Precision, int8: Int8Verdict | None = None
) -> tuple[CpuPrecision, str]:
    """(precision, why) for OpenVINO on a CPU with ``flags``; ``int8`` is the gate's verdict (None: none built).

    ``auto``: int8 when the CPU has VNNI/AMX-INT8 (or AVX2) and the INT8 model passed its gate, else bf16 when
    bf16 is native, else f32. ``int8`` asks for INT8 whatever the flags but still honours the gate (falls back like
    auto, saying so). ``bf16`` needs native bf16 (DetectorError otherwise); ``fp32`` is f32.
    """
    int8_isa = int8_instructions(flags)
    bf16 = [f for f in BF16_FLAGS if f in flags]
    if requested == "fp16":
        raise DetectorError("precision 'fp16' needs a CUDA device; OpenVINO on the CPU runs int8, bf16 or fp32")
    if requested == "fp32":
        return "f32", "configured fp32"
    if requested == "bf16":
        if not bf16:
            raise DetectorError(f"precision 'bf16' needs a CPU with {' or '.join(BF16_FLAGS)}; this one has neither")
        return "bf16", f"configured bf16; CPU has {bf16[0]}"
    fallback: CpuPrecision = "bf16" if bf16 else "f32"
    fallback_why = f"CPU has {bf16[0]}" if bf16 else f"CPU has none of {', '.join(BF16_FLAGS)}"
    if requested == "int8":
        why_int8 = f"CPU has {int8_isa}" if int8_isa else f"configured int8 (CPU has none of {', '.join(INT8_FLAGS)})"
    elif int8_isa:
        why_int8 = f"CPU has {int8_isa}"
    else:
        return fallback, f"{fallback_why}; no {'/'.join(INT8_FLAGS)}, so INT8 would not pay"
    if int8 is None:
        return fallback, f"{fallback_why}; {why_int8} but no INT8 model is built yet (python -m detectors.int8)"
    if not int8.passed:
        return fallback, f"{fallback_why}; {why_int8} but the INT8 model failed its accuracy gate: {int8.summary}"
    return "int8", f"{why_int8}; gate passed {int8.summary}"


def at_int8_threshold(config: DetectorConfig, verdict: Int8Verdict) -> DetectorConfig:
    """``config`` at the confidence threshold the INT8 gate fitted to f32's (``detectors.int8_gate``)."""
    return config.model_copy(update={"confidence": round(config.confidence * verdict.confidence_scale, 4)})
