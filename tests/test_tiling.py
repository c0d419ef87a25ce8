"""Tiled detection finds small, far people that a full-frame pass at the same size misses, without duplicates."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from detectors import Detector, DetectorConfig, TilingConfig, create_detector
from detectors.postprocess import box_iou
from detectors.tiling import Tile, TiledDetector, merge, plan_tiles
from monitor.types import Detections

BACKENDS = ["torch", *(b for b in ("onnxruntime", "openvino") if importlib.util.find_spec(b) is not None)]


def _dets(*boxes: tuple[float, float, float, float, float]) -> Detections:
    arr = np.asarray(boxes, np.float32).reshape(-1, 5)
    return Detections(arr[:, :4].copy(), arr[:, 4].copy())


def test_plan_covers_frame_with_equal_overlapping_tiles() -> None:
    """Equal tile sizes (so tiles batch together), the requested overlap, and the full frame last."""
    tiles = plan_tiles(768, 576, TilingConfig(grid=(2, 2), overlap=0.2))
    grid, full = tiles[:-1], tiles[-1]
    assert full == Tile(0, 0, 768, 576, full=True) and len(grid) == 4
    assert {(t.x1 - t.x0, t.y1 - t.y0) for t in grid} == {(427, 320)}
    assert min(t.x0 for t in grid) == 0 and max(t.x1 for t in grid) == 768
    assert min(t.y0 for t in grid) == 0 and max(t.y1 for t in grid) == 576
    assert grid[0].x1 - grid[1].x0 == pytest.approx(0.2 * 427, abs=2)
    assert len(plan_tiles(768, 576, TilingConfig(grid=(3, 1), full_frame=False))) == 3


def test_config_validates_grid() -> None:
    """A bad grid fails at config load; YAML lists become tuples, so the config stays hashable."""
    cfg = DetectorConfig.model_validate({"tiles": {"grid": [3, 2], "overlap": 0.25}})
    assert cfg.tiles is not None and cfg.tiles.grid == (3, 2)
    hash(cfg)
    with pytest.raises(ValueError):
        TilingConfig.model_validate({"grid": [0, 2]})
    with pytest.raises(ValueError):
        TilingConfig.model_validate({"grid": [2, 2], "overlap": 0.95})


def test_merge_drops_cut_fragment_and_keeps_neighbours() -> None:
    """A person cut by the left tile's right border is dropped when the right tile sees them whole."""
    left, right = Tile(0, 0, 100, 100), Tile(80, 0, 180, 100)
    parts = [
        (left, _dets((85, 10, 100, 60, 0.9), (10, 10, 30, 60, 0.8))),  # fragment at the border; a person
        (right, _dets((5, 10, 30, 60, 0.7), (60, 10, 80, 60, 0.6))),  # the whole person (x 85-110); another
    ]
    merged = merge(parts, 180, 100, iou=0.5)
    assert sorted(merged.xyxy[:, 0].tolist()) == [10, 85, 140]
    whole = merged.xyxy[merged.xyxy[:, 0] == 85][0]
    assert whole[2] == 110  # the whole box won over the higher-scored fragment


def test_merge_same_person_from_tile_and_full_frame_once() -> None:
    """The full-frame box and the tile box of one person become one box."""
    parts = [
        (Tile(0, 0, 100, 100), _dets((20, 20, 40, 80, 0.8))),
        (Tile(0, 0, 200, 100, full=True), _dets((21, 19, 41, 79, 0.6))),
    ]
    merged = merge(parts, 200, 100, iou=0.5)
    assert len(merged) == 1 and merged.confidence[0] == pytest.approx(0.8)


@pytest.fixture(scope="module")
def square_frames(square_mp4: Path) -> list[npt.NDArray[np.uint8]]:
    """Every 50th frame of the sample video (16 frames, 5 s apart; people 50-110 px tall)."""
    with av.open(str(square_mp4)) as container:
        return [
            np.asarray(f.to_ndarray(format="bgr24"), np.uint8)
            for i, f in enumerate(container.decode(video=0))
            if i % 50 == 0
        ]


def _no_duplicates(d: Detections) -> None:
    if len(d) > 1:
        iou = box_iou(d.xyxy, d.xyxy)
        np.fill_diagonal(iou, 0)
        assert iou.max() < 0.5, f"duplicate boxes, IoU {iou.max():.2f}"


def test_tiles_at_640_find_as_many_as_960(square_frames: list[npt.NDArray[np.uint8]]) -> None:
    """2x2 tiles at imgsz 640 find at least as many people as a 960 full-frame pass, without duplicates."""
    full = create_detector(DetectorConfig(imgsz=960))
    tiled = create_detector(DetectorConfig(imgsz=640, tiles=TilingConfig(grid=(2, 2), overlap=0.2)))
    assert isinstance(tiled, TiledDetector) and "grid=[2, 2]" in tiled.describe()
    plain_640 = create_detector(DetectorConfig(imgsz=640))
    n_full = n_tiled = n_640 = 0
    for frame, got, ref, low in zip(
        square_frames,
        tiled.detect(square_frames),
        full.detect(square_frames),
        plain_640.detect(square_frames),
        strict=True,
    ):
        _no_duplicates(got)
        assert len(got) >= len(ref) - 1
        h, w = frame.shape[:2]
        assert np.all(got.xyxy[:, [0, 2]] <= w) and np.all(got.xyxy[:, [1, 3]] <= h)
        n_full, n_tiled, n_640 = n_full + len(ref), n_tiled + len(got), n_640 + len(low)
    assert n_tiled >= n_full > n_640


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiling_works_with_every_backend(backend: str, square_frames: list[npt.NDArray[np.uint8]]) -> None:
    """Same merged result shape on every backend: boxes in frame pixels, keypoints shifted along."""
    det: Detector = create_detector(DetectorConfig(imgsz=640, backend=backend, tiles=TilingConfig(grid=(2, 2))))
    (got,) = det.detect([square_frames[5]])
    assert len(got) >= 3
    _no_duplicates(got)
    assert got.keypoints is not None
    inside = (got.keypoints[..., 0] >= got.xyxy[:, None, 0] - 5) & (got.keypoints[..., 0] <= got.xyxy[:, None, 2] + 5)
    assert inside[got.keypoints[..., 2] > 0.5].all()  # visible keypoints lie in their person's box
