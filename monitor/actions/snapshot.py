"""The annotated JPEG kept with an incident (the only drawing code in the engine)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from monitor.analyze.zones import Polygon
from monitor.store.disk import write_atomically
from monitor.types import Detections

ZONE_COLOUR = (0, 200, 255)
MEMBER_COLOUR = (0, 0, 255)
OTHER_COLOUR = (0, 200, 0)


def annotate(
    image: npt.NDArray[np.uint8],
    detections: Detections,
    zones: Mapping[str, Polygon],
    members: Collection[int] = (),
    caption: str = "",
    scale: float = 1.0,
) -> npt.NDArray[np.uint8]:
    """A copy of ``image`` with zones outlined and people boxed (red: counted by the rule).

    Zones and boxes are in source pixels; ``scale`` maps them onto a downscaled ``image``.
    """
    out = image.copy()
    detections = detections.scaled(scale)
    for name, polygon in zones.items():
        pts = (polygon * scale).round().astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [pts], isClosed=True, color=ZONE_COLOUR, thickness=2)
        x, y = pts[0, 0]
        cv2.putText(out, name, (int(x) + 4, int(y) - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.6, ZONE_COLOUR, 2)
    for i, (box, conf) in enumerate(zip(detections.xyxy, detections.confidence, strict=True)):
        x1, y1, x2, y2 = (int(v) for v in box.round())
        colour = MEMBER_COLOUR if i in members else OTHER_COLOUR
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        cv2.putText(out, f"{conf:.2f}", (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1)
    if caption:
        cv2.rectangle(out, (0, 0), (out.shape[1], 26), (0, 0, 0), -1)
        cv2.putText(out, caption, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1)
    return out


def write_jpeg(path: Path, image: npt.NDArray[np.uint8], quality: int = 85) -> Path:
    """Encode and write atomically (no partial file is left behind, also on a full disk: ``DiskFull``)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"could not encode snapshot {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, buf.tobytes())
    return path
