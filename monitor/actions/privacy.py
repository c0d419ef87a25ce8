"""Privacy export: an incident clip with every person's head blurred, for sharing outside the center.

People are detected on every frame by default (``detect_every=1``). Export is rare, offline and
user-triggered, and a clip is short (pre- plus post-roll, ~16 s), so the extra detector time is cheap next to
the cost of one exposed face: a box carried over N frames lags a walking person by up to N frames (at 10 fps
and 1.4 m/s, ~0.5 m for N=4), which uncovers faces. Each frame is blurred with the union of the heads found
on it and on the previous and next detected frames, so a single missed detection does not show a face
either. With ``detect_every`` > 1 that union bridges the frames in between.

Head region: from the pose keypoints (nose, eyes, ears) when any is confidently visible, sized from their
spread, the shoulder width and the box height, and extended upwards over the hair; otherwise the top
``HEAD_FRACTION`` of the box, slightly enlarged. The region is pixelated and then Gaussian-blurred, which
no deblurring recovers. The output is H.264 (yuv420p, ``+faststart``) so browsers play it as it downloads;
audio is dropped (voices identify people too).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt

from detectors import Detector
from monitor.types import Detections

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
Boxes = npt.NDArray[np.int32]  # (M, 4) x1, y1, x2, y2, clipped to the image

HEAD_KEYPOINTS = slice(0, 5)  # COCO: nose, left/right eye, left/right ear
SHOULDERS = (5, 6)
KEYPOINT_MIN_CONF = 0.4
HEAD_FRACTION = 0.22  # of the box height, when no head keypoint is visible
ENLARGE = 0.15  # of the region's size, added on every side of the fallback region
BLOCKS = 5  # pixelation blocks across a head before the Gaussian blur


# -- head regions ----------------------------------------------------------------------------------


def _keypoint_head(box: npt.NDArray[np.float32], kps: npt.NDArray[np.float32]) -> tuple[float, ...] | None:
    """Head square around the visible face keypoints, or None when none is confidently visible."""
    face = kps[HEAD_KEYPOINTS]
    visible = face[face[:, 2] >= KEYPOINT_MIN_CONF, :2]
    if len(visible) == 0:
        return None
    cx, cy = visible.mean(axis=0)
    spread = float(np.ptp(visible, axis=0).max())
    left, right = kps[SHOULDERS[0]], kps[SHOULDERS[1]]
    shoulders = 0.0
    if min(left[2], right[2]) >= KEYPOINT_MIN_CONF:
        shoulders = float(np.hypot(*(left[:2] - right[:2])))
    width, height = float(box[2] - box[0]), float(box[3] - box[1])
    side = max(2.4 * spread, 0.75 * shoulders, 0.18 * height)
    side = min(side, max(width, 0.5 * height))  # wild keypoints must not blur half the frame
    # face points sit in the lower middle of the head: reach further up (hair) than down (chin)
    return cx - 0.6 * side, cy - 0.7 * side, cx + 0.6 * side, cy + 0.5 * side


def _box_head(box: npt.NDArray[np.float32]) -> tuple[float, ...]:
    """Top ``HEAD_FRACTION`` of the person box, enlarged by ``ENLARGE`` on every side."""
    x1, y1, x2, _ = (float(v) for v in box)
    h = float(box[3] - box[1]) * HEAD_FRACTION
    dx, dy = (x2 - x1) * ENLARGE, h * ENLARGE
    return x1 - dx, y1 - dy, x2 + dx, y1 + h + dy


def head_boxes(detections: Detections, width: int, height: int) -> Boxes:
    """Integer head regions of every detected person, clipped to a ``width`` x ``height`` image."""
    regions = []
    for i, box in enumerate(detections.xyxy):
        kp = None if detections.keypoints is None else _keypoint_head(box, detections.keypoints[i])
        regions.append(kp if kp is not None else _box_head(box))
    if not regions:
        return np.zeros((0, 4), np.int32)
    arr = np.asarray(regions, np.float64)
    arr[:, [0, 1]] = np.floor(arr[:, [0, 1]])
    arr[:, [2, 3]] = np.ceil(arr[:, [2, 3]])
    arr[:, [0, 2]] = arr[:, [0, 2]].clip(0, width)
    arr[:, [1, 3]] = arr[:, [1, 3]].clip(0, height)
    keep = (arr[:, 2] > arr[:, 0]) & (arr[:, 3] > arr[:, 1])
    return arr[keep].astype(np.int32)


def blur_regions(image: Image, boxes: Boxes) -> Image:
    """Pixelate then Gaussian-blur each region of ``image`` in place; returns ``image``."""
    for x1, y1, x2, y2 in boxes.tolist():
        roi = image[y1:y2, x1:x2]
        h, w = roi.shape[:2]
        if h < 2 or w < 2:
            continue
        block = max(2, min(h, w) // BLOCKS)
        small = cv2.resize(roi, (max(1, w // block), max(1, h // block)), interpolation=cv2.INTER_AREA)
        coarse = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        sigma = max(2.0, min(h, w) / 6)
        roi[:] = cv2.GaussianBlur(coarse, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    return image


# -- decode, detect, blur, encode ------------------------------------------------------------------


class _HeadTrack:
    """Head regions per detected frame index, and the union that applies to any frame."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.heads: dict[int, Boxes] = {}

    def next_detected(self, index: int) -> int:
        """Index of the first detected frame after ``index``."""
        return (index // self.every + 1) * self.every

    def boxes_for(self, index: int) -> Boxes:
        """Heads on this frame and on the detected frames just before and after it."""
        prev = ((index - 1) // self.every) * self.every if index > 0 else None
        keys = {prev, index, self.next_detected(index)}
        found = [self.heads[k] for k in keys if k is not None and k in self.heads]
        return np.concatenate(found) if found else np.zeros((0, 4), np.int32)

    def forget_before(self, index: int) -> None:
        """Drop regions no frame from ``index`` on needs."""
        for k in [k for k in self.heads if k < index - self.every]:
            del self.heads[k]


def _even(image: Image) -> Image:
    """Pad to even width and height by repeating the last row/column (yuv420p needs even sizes)."""
    h, w = image.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return image
    return np.asarray(cv2.copyMakeBorder(image, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE), np.uint8)


class _Encoder:
    """H.264 MP4 writer that keeps the source's timestamps (camera clips may have a variable frame rate)."""

    def __init__(self, path: Path, source: av.video.stream.VideoStream, width: int, height: int, crf: int) -> None:
        self.container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        rate = source.average_rate or source.guessed_rate or Fraction(10)
        self.stream = self.container.add_stream("libx264", rate=rate)
        self.stream.width, self.stream.height = width + width % 2, height + height % 2
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": str(crf), "preset": "veryfast"}
        self.time_base = source.time_base or Fraction(1, int(rate * 1000))
        self.stream.codec_context.time_base = self.time_base
        self.first: int | None = None
        self.last_pts = -1
        self.step = max(1, round(1 / (float(rate) * float(self.time_base))))
        self.frames = 0

    def write(self, image: Image, pts: int | None) -> None:
        """Encode one BGR image at source time ``pts`` (strictly increasing, as the muxer requires)."""
        if pts is None:
            pts = self.last_pts + self.step
        if self.first is None:
            self.first = pts
        out_pts = max(pts - self.first, self.last_pts + 1)
        frame = av.VideoFrame.from_ndarray(_even(image), format="bgr24").reformat(format="yuv420p")
        frame.pts, frame.time_base = out_pts, self.time_base
        self.container.mux(self.stream.encode(frame))
        self.last_pts = out_pts
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (moov atom moved to the front)."""
        self.container.mux(self.stream.encode(None))
        self.container.close()


def export_blurred(
    clip_path: Path,
    out_path: Path,
    detector: Detector,
    *,
    detect_every: int = 1,
    batch: int = 8,
    crf: int = 20,
) -> Path:
    """Write ``clip_path`` with every detected person's head blurred to ``out_path`` (H.264 MP4) and return it.

    Written under a temporary name first, so a failed export never leaves a file that looks finished.
    """
    if detect_every < 1 or batch < 1:
        raise ValueError("detect_every and batch must be at least 1")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".part")
    try:
        with av.open(str(clip_path)) as src:
            stream = src.streams.video[0]
            stream.thread_type = "AUTO"
            encoder = _Encoder(tmp, stream, stream.codec_context.width, stream.codec_context.height, crf)
            try:
                blurred = _blur_stream(src.decode(stream), encoder, detector, detect_every, batch)
            finally:
                encoder.close()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out_path)
    log.info("exported %s: %d frames, %d head regions blurred", out_path.name, encoder.frames, blurred)
    return out_path


def _blur_stream(frames: Iterator[av.VideoFrame], encoder: _Encoder, detector: Detector, every: int, batch: int) -> int:
    """Detect in batches, then blur and encode each frame once the next detected frame's heads are known."""
    track = _HeadTrack(every)
    pending: deque[tuple[int, int | None, Image]] = deque()
    to_detect: list[tuple[int, Image]] = []
    blurred = 0

    def detect_batch() -> None:
        if to_detect:
            found = detector.detect([img for _, img in to_detect])
            for (index, img), det in zip(to_detect, found, strict=True):
                track.heads[index] = head_boxes(det, img.shape[1], img.shape[0])
            to_detect.clear()

    def emit(final: bool) -> None:
        nonlocal blurred
        known = max(track.heads, default=-1)
        while pending and (final or track.next_detected(pending[0][0]) <= known):
            index, pts, img = pending.popleft()
            boxes = track.boxes_for(index)
            encoder.write(blur_regions(img, boxes), pts)
            blurred += len(boxes)
            track.forget_before(index)

    for index, frame in enumerate(frames):
        img = np.asarray(frame.to_ndarray(format="bgr24"), np.uint8)  # no copy: it is uint8 already
        pending.append((index, frame.pts, img))
        if index % every == 0:
            to_detect.append((index, img))  # blurred in place only after its batch was detected
        if len(to_detect) >= batch:
            detect_batch()
            emit(final=False)
    detect_batch()
    emit(final=True)
    return blurred
