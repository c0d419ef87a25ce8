"""The hot-reload decision, without running anything: which cameras start, stop, restart or update in place."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from monitor.config import load_config
from monitor.config.reload import plan_reload


def test_plan_separates_input_changes_from_in_place_updates(root: Path, write_config: Callable[..., Path]) -> None:
    video = str(root / "sample_videos/square.mp4")
    zone = {"points": [[0, 0], [1, 0], [1, 1]]}
    base: dict[str, Any] = {
        "cameras": {
            "keep": {"url": video},
            "zoned": {"url": video, "zones": {"z": zone}},
            "faster": {"url": video},
            "gone": {"url": video},
        },
        "speakers": {"horn": {"kind": "rtp", "host": "127.0.0.1", "port": 5004}},
    }
    old = load_config(write_config(base, "old.yaml"))
    base["cameras"]["zoned"]["zones"]["z"] = {"points": [[0, 0], [0.5, 0], [0.5, 1]]}
    base["cameras"]["faster"]["detect_fps"] = 4
    base["cameras"]["faster"]["detector"] = {"imgsz": 1280}
    del base["cameras"]["gone"]
    base["cameras"]["new"] = {"url": video}
    base["speakers"]["horn"]["port"] = 5006
    base["data_dir"] = "./elsewhere"
    plan = plan_reload(old, load_config(write_config(base, "new.yaml")), old.config.cameras)
    assert (plan.add, plan.remove, plan.restart) == (["new"], ["gone"], ["faster"])
    assert sorted(plan.update) == ["keep", "zoned"], "zone changes keep the stream running"
    assert plan.speakers_changed and plan.needs_restart == ["data_dir"]
