"""Small, safe edits of streams.yaml from the web page (zones drawn on a camera's picture).

Round-trip YAML (ruamel) keeps the integrator's comments and layout; the edited text is validated
with the normal loader before it replaces the file, atomically, so a running engine's hot reload
only ever sees a valid file.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from monitor.config import ConfigError, load_config

_LOCK = threading.Lock()


def zone_snippet(zone: str, points: list[tuple[float, float]]) -> str:
    """The YAML a person pastes under ``cameras.NAME.zones``."""
    body = ", ".join(f"[{x:g}, {y:g}]" for x, y in points)
    return f"{zone}: {{points: [{body}]}}\n"


def set_zone(config_path: Path, camera: str, zone: str, points: list[tuple[float, float]]) -> None:
    """Add or replace one zone's polygon in the file; raise ConfigError (file unchanged) if that would be invalid."""
    yaml = YAML()
    yaml.preserve_quotes = True
    with _LOCK:
        text = config_path.read_text(encoding="utf-8")
        doc = yaml.load(text)
        cameras = doc.get("cameras") if isinstance(doc, CommentedMap) else None
        if not isinstance(cameras, CommentedMap) or camera not in cameras:
            raise KeyError(f"camera {camera!r} is not in {config_path}")
        cam = cameras[camera]
        zones = cam.get("zones")
        if not isinstance(zones, CommentedMap):
            zones = cam["zones"] = CommentedMap()
        polygon = CommentedSeq([CommentedSeq([round(x, 4), round(y, 4)]) for x, y in points])
        for item in polygon:
            item.fa.set_flow_style()
        polygon.fa.set_flow_style()
        entry = zones.get(zone)
        if isinstance(entry, CommentedMap):
            entry["points"] = polygon
        else:
            zones[zone] = CommentedMap(points=polygon)
            zones[zone].fa.set_flow_style()
        out = io.StringIO()
        yaml.dump(doc, out)
        tmp = config_path.with_name(f".{config_path.name}.edit")
        tmp.write_text(out.getvalue(), encoding="utf-8")
        try:
            load_config(tmp)  # relative paths resolve the same: same directory
        except ConfigError as exc:
            tmp.unlink(missing_ok=True)
            raise ConfigError([p for p in exc.problems]) from None
        os.replace(tmp, config_path)
