"""A cheap motion gate: skip the detector while a camera's picture has not changed.

A change is a few thumbnail pixels that moved by more than sensor noise, not the mean over the picture: a person
far off covers well under 1 % of a village camera's view, and a mean threshold low enough to see them would fire on
noise. Measured on the village scene made from the sample footage (tests/support/scenes.py, 640x360 with temporal
noise): the whole-picture mean of a 64x36 thumbnail stayed at 0.4-1.9 grey levels with 1-3 people walking (missed
against a 2.0 threshold) and, once the reference held people who then left, the empty street never counted as
changed again (the last detections were reused for an empty street). Per pixel at 160x90 the empty street has no
pixel over 3 levels and a passer-by moves dozens of pixels by more than 12.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

THUMB = (160, 90)  # 4x4 area averaging of a 640x360 frame: noise shrinks, a distant person still covers pixels
PIXEL_DIFF = 12  # grey levels one thumbnail pixel must move (noise after the averaging stays under ~4)
MIN_PIXELS = 4  # that many such pixels make a change (a distant person moves ~20)


def thumbnail(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """A small grey copy of a BGR frame (area-averaged), the unit of comparison."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return np.asarray(cv2.resize(grey, THUMB, interpolation=cv2.INTER_AREA))


def changed(
    previous: npt.NDArray[np.uint8] | None,
    current: npt.NDArray[np.uint8],
    pixel_diff: int = PIXEL_DIFF,
    min_pixels: int = MIN_PIXELS,
) -> bool:
    """Whether at least ``min_pixels`` thumbnail pixels differ by more than ``pixel_diff`` grey levels."""
    if previous is None or previous.shape != current.shape:
        return True
    return int(np.count_nonzero(cv2.absdiff(previous, current) > pixel_diff)) >= min_pixels
