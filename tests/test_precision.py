"""CPU precision choice (int8 / bf16 / f32), the INT8 accuracy gate and bf16/int8 backend rules: pure functions.

Flag sets are those of real CPUs as /proc/cpuinfo spells them: the AMD EPYC dev box (AVX512-BF16 and VNNI),
an Intel Xeon with VNNI but no bf16 (where OpenVINO ran f32 and the bench lead shrank to x1.3), a Sapphire
Rapids Xeon (AMX), an Alder Lake desktop (AVX-VNNI only), an old AVX2-only CPU and an older AVX-only one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors import DetectorError
from detectors.config import Backend, Precision
from detectors.int8 import split_frames
from detectors.int8_gate import above, fit_confidence_scale, matches, run_gate, score
from detectors.precision import CpuPrecision, Int8Verdict, choose_cpu_precision, parse_cpuinfo, read_cpu_info
from detectors.select import Available, select_backend

BASE = "fpu sse sse2 avx avx2 fma"
EPYC = frozenset(f"{BASE} avx512f avx512_bf16 avx512_vnni avx_vnni".split())
XEON_VNNI = frozenset(f"{BASE} avx512f avx512_vnni".split())
SAPPHIRE = frozenset(f"{BASE} avx512f avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16".split())
ALDER = frozenset(f"{BASE} avx_vnni".split())
AVX2 = frozenset(BASE.split())
AVX_ONLY = frozenset({"fpu", "sse", "sse2", "avx"})
PASSED = Int8Verdict(True, "MAE 0.05 vs 0.00 f32, recall 0.990 vs 1.000")
FAILED = Int8Verdict(False, "MAE 0.40 vs 0.00 f32, recall 0.900 vs 1.000")

# (case, flags, requested, INT8 verdict) -> (precision, words in the reason)
CASES: list[tuple[str, frozenset[str], Precision, Int8Verdict | None, CpuPrecision, tuple[str, ...]]] = [
    ("EPYC, gated INT8", EPYC, "auto", PASSED, "int8", ("avx512_vnni", "gate passed", "MAE 0.05 vs 0.00")),
    ("EPYC, no INT8 yet", EPYC, "auto", None, "bf16", ("avx512_bf16", "no INT8 model", "python -m detectors.int8")),
    ("EPYC, INT8 refused", EPYC, "auto", FAILED, "bf16", ("failed its accuracy gate", "MAE 0.40")),
    ("Xeon VNNI, gated INT8", XEON_VNNI, "auto", PASSED, "int8", ("avx512_vnni",)),
    ("Xeon VNNI, no INT8: f32", XEON_VNNI, "auto", None, "f32", ("none of avx512_bf16, amx_bf16",)),
    ("Sapphire Rapids: AMX", SAPPHIRE, "auto", PASSED, "int8", ("avx512_vnni",)),
    ("Sapphire Rapids, refused", SAPPHIRE, "auto", FAILED, "bf16", ("avx512_bf16", "failed")),
    ("Alder Lake: AVX-VNNI", ALDER, "auto", PASSED, "int8", ("avx_vnni",)),
    ("AVX2 only: INT8 still pays", AVX2, "auto", PASSED, "int8", ("CPU has avx2", "gate passed")),
    ("AVX2 only, no INT8 yet", AVX2, "auto", None, "f32", ("avx2 but no INT8 model",)),
    ("AVX only: INT8 does not pay", AVX_ONLY, "auto", PASSED, "f32", ("would not pay",)),
    ("fp32 forced", EPYC, "fp32", PASSED, "f32", ("configured fp32",)),
    ("bf16 asked, native", SAPPHIRE, "bf16", PASSED, "bf16", ("configured bf16", "avx512_bf16")),
    ("int8 asked without AVX2", AVX_ONLY, "int8", PASSED, "int8", ("configured int8",)),
    ("int8 asked, none built", XEON_VNNI, "int8", None, "f32", ("no INT8 model",)),
    ("int8 asked, refused", EPYC, "int8", FAILED, "bf16", ("failed its accuracy gate",)),
]


@pytest.mark.parametrize(
    ("flags", "requested", "verdict", "want", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_choice_per_cpu(
    flags: frozenset[str], requested: Precision, verdict: Int8Verdict | None, want: CpuPrecision, words: tuple[str, ...]
) -> None:
    precision, reason = choose_cpu_precision(flags, requested, verdict)
    assert precision == want
    for word in words:
        assert word in reason, reason


@pytest.mark.parametrize(("flags", "requested"), [(XEON_VNNI, "bf16"), (AVX2, "bf16"), (EPYC, "fp16")])
def test_impossible_requests_fail_at_startup(flags: frozenset[str], requested: Precision) -> None:
    with pytest.raises(DetectorError, match=requested):
        choose_cpu_precision(flags, requested, PASSED)


def test_cpuinfo_is_parsed_from_the_first_processor() -> None:
    text = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core Processor\n"
        "flags\t\t: fpu avx2 avx512_bf16 avx512_vnni\n\nprocessor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n"
    )
    info = parse_cpuinfo(text)
    assert info.model == "AMD EPYC 9654 96-Core Processor"
    assert info.flags == frozenset({"fpu", "avx2", "avx512_bf16", "avx512_vnni"})
    assert info.reported() == ["avx2", "avx512_bf16", "avx512_vnni"]
    assert info.summary() == "AMD EPYC 9654 96-Core Processor; avx2 avx512_bf16 avx512_vnni"
    arm = parse_cpuinfo("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    assert (arm.model, arm.reported()) == ("unknown CPU", [])
    assert "none of avx2 avx512_bf16" in arm.summary()


def epyc_cpuinfo(folder: Path) -> Path:
    """A /proc/cpuinfo of the EPYC dev box (``EPYC`` flags)."""
    path = folder / "cpuinfo"
    path.write_text(f"model name\t: AMD EPYC\nflags\t\t: {' '.join(sorted(EPYC))}\n", encoding="utf-8")
    return path


# oneDNN's ISA cap (ONEDNN_MAX_CPU_ISA) -> what auto picks on the EPYC with a gated INT8 model: the choice
# follows the kernels that will run (the way the bench emulates the VNNI-without-bf16 Xeon here)
ISA_CAPS = [
    ({}, EPYC, "int8", "avx512_vnni"),
    ({"ONEDNN_MAX_CPU_ISA": "ALL"}, EPYC, "int8", "avx512_vnni"),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}, XEON_VNNI, "int8", "avx512_vnni"),
    ({"DNNL_MAX_CPU_ISA": "avx2_vnni"}, ALDER, "int8", "avx_vnni"),
    ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, AVX2, "int8", "avx2"),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, AVX2 | {"avx512f"}, "int8", "avx2"),
    ({"ONEDNN_MAX_CPU_ISA": "AVX"}, AVX_ONLY | {"fma"}, "f32", "would not pay"),
]


@pytest.mark.parametrize(("environ", "flags", "want", "word"), ISA_CAPS, ids=[str(c[0]) for c in ISA_CAPS])
def test_the_onednn_isa_cap_is_the_cpu_the_choice_sees(
    tmp_path: Path, environ: dict[str, str], flags: frozenset[str], want: CpuPrecision, word: str
) -> None:
    cpuinfo = epyc_cpuinfo(tmp_path)
    info = read_cpu_info(cpuinfo, environ)
    assert info.flags == flags
    assert (info.isa_cap is None) == (flags == EPYC)
    assert ("capped at" in info.summary()) == (flags != EPYC), info.summary()
    if info.isa_cap is not None:  # named by the variable that set it
        assert info.summary().endswith(f"by {next(iter(environ))})"), info.summary()
    precision, why = choose_cpu_precision(info.flags, "auto", PASSED)
    assert (precision, word in why) == (want, True), why


def test_an_unknown_isa_cap_is_ignored_as_onednn_does_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cpuinfo = epyc_cpuinfo(tmp_path)
    with caplog.at_level("WARNING", logger="detectors.precision"):
        info = read_cpu_info(cpuinfo, {"DNNL_MAX_CPU_ISA": "AVX3"})
    assert (info.flags, info.isa_cap) == (EPYC, None)
    assert "DNNL_MAX_CPU_ISA='AVX3' is not a oneDNN ISA" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="detectors.precision"):
        read_cpu_info(cpuinfo, {"DNNL_MAX_CPU_ISA": "AVX3"})
    assert not caplog.text  # once per process, not at every look


def boxes(*rows: tuple[float, float, float, float]) -> np.ndarray:
    return np.asarray(rows, np.float64).reshape(-1, 4)


A, B, C = (0, 0, 10, 20), (30, 0, 40, 20), (60, 0, 70, 20)


def test_matching_is_one_to_one_at_iou_half() -> None:
    assert matches(boxes(A, B), boxes(A, B)) == 2
    assert matches(boxes(A, A), boxes(A)) == 1  # two predictions cannot both claim one person
    assert matches(boxes((0, 0, 10, 10)), boxes(A)) == 1  # IoU exactly 0.5 matches
    assert matches(boxes((0, 0, 10, 9)), boxes(A)) == 0  # 0.45 does not
    assert matches(boxes(), boxes(A)) == 0


def test_gate_against_f32_passes_agreement_and_refuses_losses() -> None:
    f32 = [boxes(A, B, C)] * 10
    same = run_gate(f32, [boxes(A, B, C)] * 10)
    assert same.passed and same.f32 == score(f32, f32) and same.int8.mae == 0 and same.reference == "f32 agreement"
    one_miss = run_gate(f32, [boxes(A, B)] + [boxes(A, B, C)] * 9)  # MAE 0.1, recall 29/30: -3.3 points
    assert one_miss.passed  # ...but one box of 30 is within the one-box slack a small gate set gets
    assert one_miss.int8.mae == pytest.approx(0.1) and one_miss.int8.recall == pytest.approx(29 / 30)
    assert "recall 0.967 vs 1.000" in one_miss.summary()
    two_misses = [boxes(A, B), boxes(A, B)] + [boxes(A, B, C)] * 8  # recall 28/30: -6.7 points, two boxes
    assert not run_gate(f32, two_misses, margin_mae=1.0).passed
    assert run_gate(f32, two_misses, margin_mae=1.0, margin_recall=0.07).passed
    many = [boxes(*[(x, 0, x + 10, 20) for x in range(0, 2000, 20)])] * 10  # 1000 boxes: 2 points = 20 boxes
    three_misses = [many[0][:-3], *many[1:]]
    assert run_gate(many, three_misses, margin_mae=1.0).passed  # 0.3 points: within the 2-point margin
    assert not run_gate(many, three_misses, margin_mae=1.0, margin_recall=0.001).passed  # the slack is 1 box here
    extra = run_gate(f32, [boxes(A, B, C, (100, 0, 110, 20))] * 2 + [boxes(A, B, C)] * 8)
    assert not extra.passed and extra.int8.recall == 1.0 and extra.int8.mae == pytest.approx(0.2)


def scored(*rows: tuple[tuple[float, float, float, float], float]) -> tuple[np.ndarray, np.ndarray]:
    return boxes(*(r for r, _ in rows)), np.asarray([c for _, c in rows], np.float64)


def test_int8_threshold_is_fitted_to_f32_without_buying_false_positives() -> None:
    f32 = [boxes(A, B, C)] * 10
    # INT8 scores C a little lower: it drops under 0.2 but stays above 0.2 * 0.9
    shifted = [scored((A, 0.8), (B, 0.5), (C, 0.185))] * 10
    assert fit_confidence_scale(f32, shifted, 0.2) == 0.9  # the first scale that keeps C (0.18 <= 0.185)
    assert len(above(shifted[0], 0.2 * 0.9)) == 3 and len(above(shifted[0], 0.2)) == 2
    # lowering the threshold would only add a box f32 does not have: the threshold stays
    faint = [scored((A, 0.8), (B, 0.5), (C, 0.3), ((100, 0, 110, 20), 0.17))] * 10
    assert fit_confidence_scale(f32, faint, 0.2) == 1.0
    # the gate records the scale it judged INT8 at, and the verdict carries it to the detector
    result = run_gate(f32, [above(d, 0.18) for d in shifted], confidence_scale=0.9)
    assert result.passed and result.verdict().confidence_scale == 0.9
    assert "INT8 at 0.9x the confidence threshold" in result.summary()
    assert result.to_json()["confidence_scale"] == 0.9


def test_gate_against_labels_compares_both_models_to_the_truth() -> None:
    truth = [boxes(A, B, C)] * 4
    f32 = [boxes(A, B)] * 4  # f32 itself misses one person per frame
    int8 = [boxes(A, B)] * 3 + [boxes(A)]
    result = run_gate(f32, int8, truth, truth_name="bench/gt")
    assert (result.f32.mae, result.int8.mae) == (1.0, 1.25)
    assert not result.passed and result.reference == "bench/gt"
    assert run_gate(f32, [boxes(A, B)] * 4, truth).passed
    assert result.to_json()["int8"] == {"mae": 1.25, "recall": pytest.approx(7 / 12)}


def test_gate_frames_are_held_out_of_calibration() -> None:
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(20)]
    calibration, gate = split_frames(frames, 5)
    assert len(calibration) == 15 and len(gate) == 5
    assert {int(f[0, 0, 0]) for f in gate} == {0, 4, 8, 12, 16}
    assert not {int(f[0, 0, 0]) for f in gate} & {int(f[0, 0, 0]) for f in calibration}
    with pytest.raises(ValueError):
        split_frames(frames, 20)


CUDA_BOX = Available(frozenset({"torch", "tensorrt", "openvino", "onnxruntime"}), "NVIDIA H200", "", 16, {})


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_bf16_and_int8_resolve_to_openvino(precision: Precision) -> None:
    choice = select_backend("auto", CUDA_BOX, precision=precision)
    assert (choice.backend, choice.device) == ("openvino", None)
    assert f"precision {precision}" in choice.reason
    assert select_backend("openvino", CUDA_BOX, precision=precision).backend == "openvino"
    others: tuple[Backend, ...] = ("onnxruntime", "torch", "tensorrt")
    for other in others:
        with pytest.raises(DetectorError, match="needs the openvino backend"):
            select_backend(other, CUDA_BOX, precision=precision)
    no_openvino = Available(frozenset({"torch", "onnxruntime"}), None, "no GPU", 2, {})
    with pytest.raises(DetectorError, match="pip install openvino"):
        select_backend("auto", no_openvino, precision=precision)
