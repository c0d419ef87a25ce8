"""Calibration (#15): the pure choice of a detector setting from people's heights, its record, and which cameras
calibrate. The real-detector runs (sample video, engine, CLI) are in tests/test_calibration_e2e.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import DetectorConfig
from detectors.calibration import (
    CALIBRATED_CONFIDENCE,
    CANDIDATES,
    MIN_HEIGHT_PX,
    Calibration,
    Candidate,
    Choice,
    choose_setting,
    person_heights,
    reference_candidate,
)
from monitor.config import load_config
from monitor.evaluate import resolve_setup
from monitor.runtime.calibration import (
    calibration_off,
    camera_record_path,
    decide,
    load_record,
    reusable,
    save_record,
)

VGA = (768, 576)  # the sample's frame


def test_scale_and_cost_of_plain_sizes_and_tiles() -> None:
    assert Candidate(1280).scale(VGA) == pytest.approx(1280 / 768)
    assert Candidate(640).cost(VGA) == 640 * 480  # letterboxed to the stride: 640x480
    tiles = Candidate(960, (2, 2))
    assert tiles.scale(VGA) == pytest.approx(960 / 427)  # a 2x2 tile with 0.2 overlap is 427 px wide
    # the measured ms/frame of bench/ACCURACY.md come in the same order as the cost
    measured = [(Candidate(640), 26), (Candidate(960), 63), (Candidate(1280), 102), (Candidate(640, (2, 2)), 117),
                (Candidate(1600), 164), (Candidate(960, (2, 2)), 269)]  # fmt: skip
    assert [ms for _, ms in sorted(measured, key=lambda m: m[0].cost(VGA))] == sorted(ms for _, ms in measured)


def test_tiles_cost_more_than_a_plain_size_of_the_same_scale() -> None:
    for grid_size in (960, 1280):
        tiles = Candidate(grid_size, (2, 2))
        plain = Candidate(round(tiles.scale(VGA) * 768 / 32) * 32)
        assert plain.scale(VGA) == pytest.approx(tiles.scale(VGA), rel=0.03)
        assert plain.cost(VGA) < tiles.cost(VGA)


def test_sample_like_heights_choose_1280_at_the_calibrated_confidence() -> None:
    """People 60-150 px in a 768x576 frame (the sample, as the reference pass sees it): 60 px * 1280/768 = 100."""
    heights = [61.0] * 6 + [80.0] * 60 + [140.0] * 34
    choice, evidence = choose_setting(heights, VGA, frames=12)
    assert choice == Choice(1280, CALIBRATED_CONFIDENCE)
    assert evidence.basis_px == 61.0 and evidence.scaled_px == pytest.approx(101.7, abs=0.1)
    assert evidence.people == 100 and evidence.frames == 12
    assert next(o.label for o in evidence.options if o.enough) == "imgsz 1280"
    assert not any(o.enough for o in evidence.options if o.cost < 4)  # nothing cheaper was enough
    assert "imgsz 1280" in evidence.reason


def test_small_frames_enlarge_with_a_plain_size_not_tiles() -> None:
    """A 640x360 sub-stream whose far people are 38 px needs x2.63: plain 1760 (x2.75) is cheaper than 2x2 tiles
    at 960 (x2.7), measured 0.25 vs 0.38 CPU-s per camera-second."""
    sub = (640, 360)
    choice, evidence = choose_setting([38.0] * 20, sub)
    assert choice == Choice(1760, CALIBRATED_CONFIDENCE)
    assert Candidate(1760).cost(sub) < Candidate(960, (2, 2)).cost(sub)
    assert evidence.scaled_px == pytest.approx(104.5)


def test_large_people_choose_the_cheapest_size() -> None:
    choice, evidence = choose_setting([160.0, 180.0, 200.0, 220.0, 300.0] * 3, VGA)
    assert choice == Choice(640, CALIBRATED_CONFIDENCE)
    assert evidence.scaled_px is not None and evidence.scaled_px >= MIN_HEIGHT_PX


def test_people_too_small_for_any_plain_size_get_tiles_then_the_largest_scale() -> None:
    hd = (1920, 1080)
    choice, _ = choose_setting([90.0] * 20, hd)  # needs x1.11: plain 1920 is x1.0, 2x2 tiles at 960 x0.9...
    assert choice is not None and choice.grid == (2, 2)
    choice, evidence = choose_setting([20.0] * 20, hd)  # hopeless: the most enlarging candidate, said so
    assert choice == Choice(1600, CALIBRATED_CONFIDENCE, (2, 2))
    assert "may be missed" in evidence.reason


@pytest.mark.parametrize("heights", [[], [80.0] * 4])
def test_too_few_people_keep_the_default_and_say_so(heights: list[float]) -> None:
    choice, evidence = choose_setting(heights, VGA, frames=12)
    assert choice is None
    assert "keeping the default, trying again later" in evidence.reason
    assert evidence.scaled_px is None and evidence.people == len(heights)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=8, max_value=600), min_size=5, max_size=80),
    st.sampled_from([(640, 480), (768, 576), (1280, 720), (1920, 1080), (3840, 2160)]),
)
def test_choice_is_the_cheapest_enough_candidate(heights: list[float], size: tuple[int, int]) -> None:
    choice, evidence = choose_setting(heights, size)
    assert choice is not None
    chosen = Candidate(choice.imgsz, choice.grid)
    basis = float(np.percentile(heights, 5))
    assert evidence.basis_px == pytest.approx(basis, abs=0.06)  # stored rounded to 0.1 px
    enough = [c for c in CANDIDATES if basis * c.scale(size) >= MIN_HEIGHT_PX]
    if enough:
        assert chosen in enough
        assert chosen.cost(size) == min(c.cost(size) for c in enough)
    else:
        assert chosen.scale(size) == max(c.scale(size) for c in CANDIDATES)
    # monotone: everybody twice as tall never needs a costlier setting
    bigger, _ = choose_setting([h * 2 for h in heights], size)
    assert bigger is not None and Candidate(bigger.imgsz, bigger.grid).cost(size) <= chosen.cost(size)


def test_boxes_cut_by_the_top_or_bottom_edge_are_not_measured() -> None:
    boxes: list[list[float]] = [[10, 100, 40, 180], [50, 0, 80, 40], [90, 540, 120, 576], [130, 1.5, 150, 60]]
    assert person_heights(boxes, VGA) == [80.0]


def test_reference_is_1600_with_tiles_on_large_frames() -> None:
    assert reference_candidate(VGA) == Candidate(1600)
    assert reference_candidate((1920, 1080)) == Candidate(1600, (2, 2))


def test_choice_applies_size_confidence_and_tiles_and_keeps_the_rest() -> None:
    base = DetectorConfig(iou=0.45, backend="openvino")
    tiled = Choice(960, 0.25, (2, 2)).apply(base)
    assert (tiled.imgsz, tiled.confidence, tiled.iou, tiled.backend) == (960, 0.25, 0.45, "openvino")
    assert tiled.tiles is not None and tiled.tiles.grid == (2, 2)
    assert Choice(1280, 0.25).apply(tiled).tiles is None


def test_record_round_trips_through_a_file_and_is_reused_only_for_the_same_model_and_size(tmp_path: Path) -> None:
    record = decide([61.0] * 5 + [90.0] * 30, 12, VGA, "sha256:abc", at=1_700_000_000.0)
    path = tmp_path / "calibration" / "x.json"
    save_record(path, record)
    loaded = load_record(path)
    assert loaded == record
    assert Calibration.from_json(json.loads(json.dumps(record.to_json()))) == record
    assert reusable(loaded, "sha256:abc", VGA)
    assert not reusable(loaded, "sha256:other", VGA)  # another model
    assert not reusable(loaded, "sha256:abc", (1280, 720))  # the camera changed
    nobody = decide([], 12, VGA, "sha256:abc")
    assert nobody.state == "no_people" and not reusable(nobody, "sha256:abc", VGA)
    path.write_text("{not json", encoding="utf-8")
    assert load_record(path) is None
    assert load_record(tmp_path / "missing.json") is None


def test_which_cameras_calibrate(write_config: Callable[..., Path], tmp_path: Path) -> None:
    video = str(tmp_path / "v.mp4")
    path = write_config(
        {
            "detector": {"imgsz": 960, "confidence": 0.35},  # the global default: not a hand-made choice per view
            "cameras": {
                "plain": {"url": video},
                "sized": {"url": video, "detector": {"imgsz": 1280}},
                "tiled": {"url": video, "detector": {"tiles": {"grid": [2, 2]}}},
                "conf": {"url": video, "detector": {"confidence": 0.3}},
                "off": {"url": video, "detector": {"calibrate": False}},
            },
        }
    )
    loaded = load_config(path)
    assert {name: calibration_off(loaded, name) for name in loaded.config.cameras} == {
        "plain": None,
        "sized": "the camera sets detector.imgsz",
        "tiled": "the camera sets detector.tiles",
        "conf": "the camera sets detector.confidence",
        "off": "calibrate: false",
    }
    path.write_text(path.read_text().replace("confidence: 0.35", "confidence: 0.35\n  calibrate: false"))
    everywhere_off = load_config(path)
    assert calibration_off(everywhere_off, "plain") == "calibrate: false"
    # one file per camera source and model, never named after the camera
    assert camera_record_path(loaded, "plain") == camera_record_path(loaded, "sized").with_name(
        camera_record_path(loaded, "plain").name
    )
    assert camera_record_path(loaded, "plain").parent == loaded.data_dir / "calibration"
    assert "plain" not in camera_record_path(loaded, "plain").name


def test_analyze_and_eval_calibrate_unless_a_setting_is_given_by_hand() -> None:
    assert resolve_setup(None, None, None).calibrate
    assert not resolve_setup(None, None, None, ["imgsz=1280"]).calibrate
    assert not resolve_setup(None, None, None, ["confidence=0.25"]).calibrate
    assert not resolve_setup(None, None, None, ["calibrate=false"]).calibrate
    assert resolve_setup(None, None, None, ["iou=0.45"]).calibrate
