"""Small, safe edits of streams.yaml from the web page (zones drawn on a camera's picture).

The file is the integrator's: an edit replaces or inserts only the characters of one zone and leaves every
other byte alone (comments, key order, quoting, blank lines, line endings). Positions come from the YAML
parser's node offsets. The new file is validated, and checked to differ from the old one in that zone only,
before it atomically replaces the old file, so a running engine's hot reload only ever sees a valid file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
import threading
from pathlib import Path

from yaml import MappingNode, Node, ScalarNode, SequenceNode

from monitor.config.load import LoadedConfig, load_config
from monitor.config.models import ZoneConfig, name_problem
from monitor.config.yamlmarks import compose, load_with_marks, scalar

_LOCK = threading.Lock()
_MERGE = "tag:yaml.org,2002:merge"
_ALIAS_AFTER_KEY = re.compile(r"[ \t]*:[ \t]*(\*[^\s,\[\]{}]+)")  # `key: *anchor`


class ZoneEditError(ValueError):
    """The file is laid out so that a safe automatic edit is not possible; the message says what to do."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Edit:
    """Replace ``text[start:end]`` with ``new``."""

    start: int
    end: int
    new: str

    def apply(self, text: str) -> str:
        return text[: self.start] + self.new + text[self.end :]


Points = list[tuple[float, float]]


def number(value: float) -> str:
    """A coordinate as written to the file: at most 4 decimals, no exponent (YAML would read ``1e-05`` as text)."""
    text = format(round(value, 4), ".4f").rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def points_yaml(points: Points) -> str:
    """``[[0.1, 0.5], [0.6, 0.5], ...]``: one zone's corners as a YAML flow list."""
    return "[" + ", ".join(f"[{number(x)}, {number(y)}]" for x, y in points) + "]"


def key_yaml(name: str) -> str:
    """A mapping key for ``name``: plain when YAML reads it back as that text, else double-quoted (``"123"``)."""
    return name if load_with_marks(name)[0] == name else json.dumps(name, ensure_ascii=False)


def zone_snippet(zone: str, points: Points) -> str:
    """The YAML a person pastes under ``cameras.NAME.zones``: the line a save adds for a new zone."""
    return f"{key_yaml(zone)}: {{points: {points_yaml(points)}}}\n"


def with_zone(text: str, camera: str, zone: str, points: Points) -> str:
    """``text`` with ``cameras.CAMERA.zones.ZONE.points`` set to ``points``; nothing else changes.

    An existing zone keeps its other keys (``filter:``) and only its points' characters are replaced; a new
    zone becomes one line after the camera's last zone. KeyError: no such camera; ZoneEditError: the layout
    around the zone cannot be edited automatically.
    """
    problem = name_problem(zone)
    if problem is not None:
        raise ZoneEditError(f"zone name {zone!r} {problem}")
    nl = "\r\n" if "\r\n" in text else "\n"
    root = compose(text)
    cameras = _mapping_here(_entry(root, "cameras") if isinstance(root, MappingNode) else None, "cameras")
    found = _entry(cameras, camera)
    if found is None:
        raise KeyError(camera)
    cam = _mapping_here(found, f"camera {camera!r}")
    line = zone_snippet(zone, points).rstrip("\n")
    zones_entry = _entry(cam, "zones")
    if zones_entry is None:  # the camera's first zone: a `zones:` block (or flow entry) of its own
        step = max(cam.value[0][0].start_mark.column - found[0].start_mark.column, 2) if cam.value else 2
        return _append(text, cam, f"zones: {{{line}}}", [(0, "zones:"), (step, line)], nl).apply(text)
    zones = _mapping_here(zones_entry, f"zones of camera {camera!r}")
    zone_entry = _entry(zones, zone)
    if zone_entry is None:
        return _append(text, zones, line, [(0, line)], nl).apply(text)
    zone_value = zone_entry[1]
    here = _is_here(zone_entry) and isinstance(zone_value, MappingNode)
    points_entry = _entry(zone_value, "points") if here and isinstance(zone_value, MappingNode) else None
    if points_entry is None:  # not a mapping with points (an alias, null...): the whole value is written anew
        start, end = _span(text, *zone_entry)
        return _Edit(start, end, ("" if start < end else " ") + f"{{points: {points_yaml(points)}}}").apply(text)
    start, end = _span(text, *points_entry)
    return _Edit(start, end, _points_like(text, points_entry, points, nl)).apply(text)


def set_zone(config_path: Path, camera: str, zone: str, points: Points) -> LoadedConfig:
    """Add or replace one zone's polygon in the file and return the config it now holds.

    Raises KeyError (unknown camera), ConfigError (the result would be invalid) or ZoneEditError (the edit
    would change more than that zone, or the file changed meanwhile); the file is then left as it was.
    The write is atomic: a temporary file beside it (same permissions) is validated and renamed over it, so
    the file that was checked is the file that lands. (monitor.store's write_atomically sits above the config
    layer, and validating its result would leave a moment where an invalid file is in place.)
    """
    path = config_path.resolve()  # a symlinked streams.yaml: replace the file it points at, not the link
    with _LOCK:
        raw = path.read_bytes()
        before = load_config(path)
        new_text = with_zone(raw.decode("utf-8"), camera, zone, points)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.edit")
        _write_new(tmp, new_text.encode("utf-8"), stat.S_IMODE(path.stat().st_mode))
        try:
            after = load_config(tmp)  # same directory: relative paths resolve the same
            _only_zone_changed(before, after, camera, zone, points)
            if path.read_bytes() != raw:
                raise ZoneEditError("streams.yaml was changed by someone else meanwhile; reload and save again")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return dataclasses.replace(after, path=path)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write a new file with ``mode``, synced to disk; a leftover of this process and thread (a crash) goes first."""
    path.unlink(missing_ok=True)  # the name holds our pid and thread: nobody else writes it
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)  # despite the umask: a file holding secrets stays 0600
            out.write(data)
            out.flush()
            os.fsync(out.fileno())  # the rename must not land before the data does
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _only_zone_changed(before: LoadedConfig, after: LoadedConfig, camera: str, zone: str, points: Points) -> None:
    """Refuse an edit whose effect reaches further than the zone (anchors, merge keys, camera_defaults)."""
    written = [(float(number(x)), float(number(y))) for x, y in points]
    old = before.config.cameras[camera].zones.get(zone)
    new_zone = old.model_copy(update={"points": written}) if old else ZoneConfig(points=written)
    expected = before.config.model_dump()
    expected["cameras"][camera]["zones"][zone] = new_zone.model_dump()
    if after.config.model_dump() != expected:
        raise ZoneEditError(
            f"saving zone {zone!r} here would change more than that zone (the camera's zones come from a YAML "
            "anchor, merge key or camera_defaults); add it to streams.yaml by hand"
        )


def _entry(mapping: MappingNode, key: str) -> tuple[Node, Node] | None:
    """The last ``key: value`` pair of a mapping (YAML lets a later duplicate win), merge keys aside."""
    found = None
    for k, v in mapping.value:
        if k.tag != _MERGE and isinstance(k, ScalarNode) and scalar(k) == key:
            found = (k, v)
    return found


def _mapping_here(entry: tuple[Node, Node] | None, what: str) -> MappingNode:
    """The mapping value of ``entry``, written at that place in the file (not an alias of one elsewhere)."""
    if entry is None:
        raise ZoneEditError(f"streams.yaml has no {what} section")
    if not isinstance(entry[1], MappingNode):
        raise ZoneEditError(f"{what} is not a mapping; fix streams.yaml by hand")
    if not _is_here(entry):
        raise ZoneEditError(f"{what} is a YAML alias (*name) of a mapping elsewhere; edit streams.yaml by hand")
    return entry[1]


def _is_here(entry: tuple[Node, Node]) -> bool:
    """False for ``key: *alias``: the parser hands back the anchored node, which lies elsewhere in the file."""
    return entry[1].start_mark.index >= entry[0].end_mark.index


def _span(text: str, key: Node, value: Node) -> tuple[int, int]:
    """Where a mapping value's own characters are (an alias: the ``*name`` after the key)."""
    if _is_here((key, value)):
        return value.start_mark.index, _end(text, value)
    alias = _ALIAS_AFTER_KEY.match(text, key.end_mark.index)
    if alias is None:
        raise ZoneEditError(f"cannot find the value of {scalar(key)!r} (line {key.start_mark.line + 1}); edit by hand")
    return alias.span(1)


def _end(text: str, node: Node) -> int:
    """Where a node's text ends: a block collection's own end mark lies at the next token, past comments."""
    if isinstance(node, MappingNode) and not node.flow_style and node.value:
        key, value = node.value[-1]
        last_end: int = max(key.end_mark.index, _span(text, key, value)[1])
        return last_end
    if isinstance(node, SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        if last.start_mark.index < node.start_mark.index or (
            len(node.value) > 1 and last.start_mark.index <= node.value[-2].start_mark.index
        ):
            raise ZoneEditError(f"a list ending in a YAML alias (line {node.start_mark.line + 1}); edit by hand")
        return _end(text, last)
    end: int = node.end_mark.index
    return end


def _line_after(text: str, index: int) -> int:
    """The start of the line after the one ``index`` is on (or ``index`` itself at a line start)."""
    if index > 0 and text[index - 1] == "\n":
        return index
    newline = text.find("\n", index)
    return len(text) if newline < 0 else newline + 1


def _append(text: str, mapping: MappingNode, flow: str, block: list[tuple[int, str]], nl: str) -> _Edit:
    """Add an entry at the end of a mapping: ``flow`` inside ``{...}``, or ``block`` lines (extra indent, text)
    at the mapping's indentation after its last line."""
    if mapping.flow_style:
        close = mapping.end_mark.index - 1
        if text[close] != "}":
            raise ZoneEditError(f"unexpected layout at line {mapping.end_mark.line + 1}; edit by hand")
        at = len(text[:close].rstrip())
        separator = "" if text[at - 1] in "{," else ", "
        return _Edit(at, at, separator + flow)
    indent = mapping.value[0][0].start_mark.column
    at = _line_after(text, _end(text, mapping))
    lines = "".join(" " * (indent + extra) + line + nl for extra, line in block)
    return _Edit(at, at, (nl if at == len(text) and text and not text.endswith("\n") else "") + lines)


def _points_like(text: str, entry: tuple[Node, Node], points: Points, nl: str) -> str:
    """New points in the old ones' style: a block list (``- [x, y]`` lines) stays one, anything else is a flow list."""
    value = entry[1]
    start = value.start_mark.index
    if _is_here(entry) and isinstance(value, SequenceNode) and not value.flow_style and text[start] == "-":
        return (nl + " " * value.start_mark.column).join(f"- [{number(x)}, {number(y)}]" for x, y in points)
    return points_yaml(points)
