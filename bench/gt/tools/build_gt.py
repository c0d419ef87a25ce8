"""Build ``bench/gt/square_gt.txt`` from the detector candidates plus the corrections made by eye.

Every annotated frame (decode index 0, 20, ..., 780) was rendered with ``render.py`` and checked by
a person; the outcome of that review is the data below, so the ground truth is reproducible from
``candidates.py`` output and the review is auditable line by line.

    PYTHONPATH=. python bench/gt/tools/build_gt.py /tmp/gt_review/candidates.txt bench/gt/square_gt.txt

Output rows: ``frame,id,x,y,w,h,conf,class,visibility`` (MOT17 gt.txt), frame = decode index + 1,
id = box number within the frame (not a track id: only detection and counting are evaluated),
conf 1, class 1 = pedestrian or 8 = ambiguous (an ignore region), visibility 1 unless judged lower.
"""

from __future__ import annotations

import sys
from pathlib import Path

Box = tuple[float, float, float, float]  # x, y, w, h in pixels of the 768x576 frame

# Candidates removed as not-a-person, by (1-based frame, candidate number). The review found none.
REMOVED: dict[int, list[int]] = {}

# Candidate boxes replaced by a hand-drawn one (merged/split/badly fitted boxes). None needed.
REPLACED: dict[tuple[int, int], Box] = {}

# People the candidates missed, with the visibility judged by eye; boxes read off the 50 px grid
# of 4x zoomed crops (``render.py --crop``), so each edge is uncertain by about +-2 px.
ADDED: dict[int, list[tuple[Box, float]]] = {
    21: [((413, 175, 22, 77), 0.5)],  # behind the "fire assembly point" sign, head and feet visible
    81: [((272, 53, 15, 32), 1.0)],  # far path, top left (~32 px tall)
    101: [((222, 62, 15, 33), 1.0)],  # same person, further along
    121: [((167, 69, 15, 36), 1.0)],  # same person
    141: [((106, 82, 15, 38), 1.0)],  # same person
    161: [
        ((30, 96, 25, 44), 1.0),  # same person, now with a blue bag
        ((687, 106, 14, 38), 0.4),  # woman behind the bald man (candidate 6), top right
    ],
    721: [((720, 50, 16, 38), 0.9)],  # standing between the white van and the blue car
    741: [((743, 57, 11, 40), 0.8)],  # same person, at the blue car's boot
    761: [((743, 59, 12, 39), 0.5)],  # same person, bent into the open boot
    781: [((754, 59, 11, 37), 0.5)],  # same person, partly behind the boot lid
}

# Regions where a person is present but too little of them shows to demand (or forbid) a
# detection: written as class 8 (MOT "distractor"), i.e. ignored by ``monitor eval``.
AMBIGUOUS: dict[int, list[Box]] = {
    501: [(756, 255, 12, 60)],  # a sliver of someone entering at the right edge
    661: [(758, 30, 10, 22)],  # head only, behind the blue car at the top-right edge
    681: [(749, 36, 15, 16)],  # head only, above the blue car's roof
    701: [(735, 44, 13, 10)],  # head only, above the blue car's roof
}


def build(candidates: str) -> list[str]:
    """Apply the review to the candidate rows; return MOT lines sorted by frame."""
    per_frame: dict[int, list[tuple[Box, int, float]]] = {}
    for line in candidates.splitlines():
        if not line.strip():
            continue
        v = line.split(",")
        frame, num = int(v[0]), int(v[1])
        per_frame.setdefault(frame, [])
        if num in REMOVED.get(frame, []):
            continue
        box = REPLACED.get((frame, num), (float(v[2]), float(v[3]), float(v[4]), float(v[5])))
        per_frame[frame].append((box, 1, 1.0))
    for frame, added in ADDED.items():
        per_frame.setdefault(frame, []).extend((box, 1, vis) for box, vis in added)
    for frame, boxes in AMBIGUOUS.items():
        per_frame.setdefault(frame, []).extend((box, 8, 0.1) for box in boxes)
    lines = []
    for frame in sorted(per_frame):
        for n, ((x, y, w, h), cls, vis) in enumerate(per_frame[frame], start=1):
            lines.append(f"{frame},{n},{x:.1f},{y:.1f},{w:.1f},{h:.1f},1,{cls},{vis:.1f}")
    return lines


def main() -> None:
    """candidates.txt -> square_gt.txt."""
    src, dst = sys.argv[1], sys.argv[2]
    lines = build(Path(src).read_text(encoding="utf-8"))
    Path(dst).write_text("\n".join(lines) + "\n", encoding="utf-8")
    people = sum(1 for line in lines if line.split(",")[7] == "1")
    print(f"{dst}: {len({line.split(',')[0] for line in lines})} frames, {people} people, {len(lines) - people} ignore")


if __name__ == "__main__":
    main()
