"""A cheap motion gate: skip the detector while a camera's picture has not changed."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

THUMB = (64, 36)  # small enough that sensor noise averages out, large enough to see a person move


def thumbnail(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """A tiny grey copy of the frame (area-averaged), the unit of comparison."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return np.asarray(cv2.resize(grey, THUMB, interpolation=cv2.INTER_AREA))


def changed(previous: npt.NDArray[np.uint8] | None, current: npt.NDArray[np.uint8], threshold: float = 2.0) -> bool:
    """Whether the mean absolute difference of two thumbnails exceeds ``threshold`` grey levels."""
    if previous is None or previous.shape != current.shape:
        return True
    return float(np.mean(cv2.absdiff(previous, current))) > threshold
