"""Tracking on real footage: the same person keeps the same id between detections 0.5 s apart."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np

from detectors import Detector
from monitor.analyze.tracking import PersonTracker
from monitor.types import Detections


def sampled_frames(video: Path, start_s: float, seconds: float, fps: float) -> list[np.ndarray]:
    frames, next_t = [], start_s
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            t = float(frame.pts * frame.time_base)
            if t >= next_t:
                frames.append(frame.to_ndarray(format="bgr24"))
                next_t += 1 / fps
            if t > start_s + seconds:
                break
    return frames


def test_ids_persist_for_real_pedestrians_at_two_detections_per_second(square_mp4: Path, detector: Detector) -> None:
    tracker = PersonTracker()
    found = detector.detect(sampled_frames(square_mp4, 50.5, 8, 2))
    tracked = [tracker.update(i * 0.5, d) for i, d in enumerate(found)]
    assert len(tracked) >= 15
    kept = []
    for before, after in itertools.pairwise(tracked[2:]):  # after the tracks are confirmed
        ids_before = {int(i) for i in before.tracker_id if i >= 0}  # type: ignore[union-attr]
        ids_after = {int(i) for i in after.tracker_id if i >= 0}  # type: ignore[union-attr]
        if ids_before:
            kept.append(len(ids_before & ids_after) / len(ids_before))
    assert np.mean(kept) > 0.8, f"share of tracks kept from one detection to the next: {np.mean(kept):.2f}"
    tracked_share = np.mean([(t.tracker_id >= 0).mean() for t in tracked[3:]])  # type: ignore[union-attr]
    assert tracked_share > 0.8, f"share of detections with a track id: {tracked_share:.2f}"
    assert tracker.active <= 12, "lost tracks are dropped (bounded state)"


def test_empty_frames_keep_the_tracker_working() -> None:
    tracker = PersonTracker(buffer_s=3)
    person = Detections(np.array([[100, 100, 140, 220]], np.float32), np.array([0.9], np.float32))
    tracker.update(0.0, person)
    first = tracker.update(0.5, person)
    tracker.update(1.0, Detections.empty())  # one missed detection
    again = tracker.update(1.5, person)
    assert first.tracker_id is not None and again.tracker_id is not None
    assert again.tracker_id[0] == first.tracker_id[0] >= 0, "a short miss does not change the id"
    assert tracker.first_seen(int(again.tracker_id[0])) == 0.0
    tracker.update(10.0, Detections.empty())
    assert tracker.active == 0, "a track unseen for longer than the buffer is dropped"


def test_walking_people_keep_ids_and_two_people_do_not_swap() -> None:
    tracker = PersonTracker()
    for step in range(8):  # two people 2 body heights apart walking towards each other's side at 0.8 bh/s
        x = step * 0.5 * 0.8 * 100
        dets = Detections(
            np.array([[100 + x, 100, 140 + x, 200], [400 - x, 100, 440 - x, 200]], np.float32),
            np.array([0.9, 0.9], np.float32),
        )
        out = tracker.update(step * 0.5, dets)
    assert out.tracker_id is not None and out.tracker_id.tolist() == [1, 2]
