"""Privacy export on real footage with the real detector: heads blurred, the rest intact, browser-playable MP4."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest

from detectors import Detector
from monitor.actions.privacy import export_blurred, head_boxes
from monitor.types import Detections

pytestmark = pytest.mark.slow

Image = npt.NDArray[np.uint8]
SAMPLED = (10, 20)  # frames whose heads and background are checked


def decode(path: Path) -> tuple[list[Image], str, str]:
    """All frames as BGR, the codec name and the pixel format."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [np.asarray(f.to_ndarray(format="bgr24"), np.uint8) for f in container.decode(stream)]
        return frames, stream.codec_context.name, str(stream.codec_context.pix_fmt)


def top_level_atoms(path: Path) -> list[str]:
    """MP4 box types at the top level, in file order."""
    names, data, pos = [], path.read_bytes(), 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        names.append(kind.decode("latin-1"))
        if size < 8:
            break
        pos += size
    return names


def sharpness(image: Image) -> float:
    """Variance of the Laplacian: high for detail (a face), low for blur."""
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def psnr(a: Image, b: Image, mask: npt.NDArray[np.bool_]) -> float:
    mse = float(np.mean((a[mask].astype(np.float64) - b[mask].astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def away_from_people(shape: tuple[int, ...], detections: list[Detections]) -> npt.NDArray[np.bool_]:
    """Pixels outside every person box (generously enlarged) on the frames whose heads may be blurred here."""
    mask = np.ones(shape[:2], bool)
    for det in detections:
        for x1, y1, x2, y2 in det.xyxy.tolist():
            dx, dy = 0.3 * (x2 - x1) + 8, 0.3 * (y2 - y1) + 8
            mask[max(0, int(y1 - dy)) : int(y2 + dy), max(0, int(x1 - dx)) : int(x2 + dx)] = False
    return mask


@pytest.fixture(scope="module")
def exported(square_mp4: Path, detector: Detector, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A ~3 s incident-like clip cut from the sample (stream copy, as the engine writes clips) and its export."""
    ffmpeg = shutil.which("ffmpeg") or pytest.skip("apt-get install ffmpeg")
    tmp = tmp_path_factory.mktemp("privacy")
    clip = tmp / "clip.mp4"
    cmd = [ffmpeg, "-v", "error", "-ss", "10", "-i", str(square_mp4), "-t", "3", "-c", "copy", "-an", str(clip)]
    subprocess.run(cmd, check=True)
    out = export_blurred(clip, tmp / "export" / "clip-blurred.mp4", detector)
    return clip, out


def test_export_is_browser_playable_h264(exported: tuple[Path, Path]) -> None:
    clip, out = exported
    original, _, _ = decode(clip)
    frames, codec, pix_fmt = decode(out)
    assert (codec, pix_fmt) == ("h264", "yuv420p")
    assert abs(len(frames) - len(original)) <= 1 and len(frames) >= 25
    assert frames[0].shape == original[0].shape
    atoms = top_level_atoms(out)
    assert atoms.index("moov") < atoms.index("mdat"), "faststart: the index comes before the media data"
    assert not list(out.parent.glob("*.part"))


def test_heads_are_blurred_and_the_rest_is_intact(exported: tuple[Path, Path], detector: Detector) -> None:
    clip, out = exported
    original, _, _ = decode(clip)
    blurred, _, _ = decode(out)
    checked = 0
    for k in SAMPLED:
        neighbours = detector.detect(original[k - 1 : k + 2])
        height, width = original[k].shape[:2]
        for x1, y1, x2, y2 in head_boxes(neighbours[1], width, height).tolist():
            x1, y1, x2, y2 = x1 + 2, y1 + 2, x2 - 2, y2 - 2  # inside the blurred region, clear of its edge
            if min(x2 - x1, y2 - y1) < 10:
                continue
            before = sharpness(original[k][y1:y2, x1:x2])
            after = sharpness(blurred[k][y1:y2, x1:x2])
            assert after < 0.3 * before, f"frame {k} head {(x1, y1, x2, y2)}: sharpness {before:.0f} -> {after:.0f}"
            checked += 1
        mask = away_from_people(original[k].shape, neighbours)
        assert mask.mean() > 0.5
        assert psnr(original[k], blurred[k], mask) > 30
    assert checked >= 3, "the sample has people at these frames"
