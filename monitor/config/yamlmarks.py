"""Load YAML while remembering where every value came from, so errors can name file:line:col."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loading without base-60 numbers: ``start: 22:00`` stays the text "22:00", not 1320."""


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _INT,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


@dataclass(frozen=True, slots=True)
class Mark:
    """1-based line and column of a YAML node."""

    line: int
    col: int


class YamlSyntaxError(ValueError):
    """The text is not valid YAML; ``mark`` says where the parser gave up."""

    def __init__(self, message: str, mark: Mark | None) -> None:
        super().__init__(message)
        self.mark = mark


def load_with_marks(text: str) -> tuple[Any, dict[Path_, Mark]]:
    """Parse YAML text into plain Python data plus a map from key path to source position.

    Keys map to the position of the key itself (where a person would look to fix it);
    list items map to the position of the item.
    """
    root = compose(text)
    marks: dict[Path_, Mark] = {}
    if root is None:
        return None, marks
    marks[()] = _mark(root)
    return _build(root, (), marks), marks


def compose(text: str) -> yaml.Node | None:
    """The node tree of ``text``, read with the same rules as :func:`load_with_marks`.

    Each node's ``start_mark.index``/``end_mark.index`` are character offsets into ``text``, so an edit can
    replace exactly one value and leave every other character of the file alone. Aliases come back as the
    anchored node itself (with the anchor's offsets). None for an empty document.
    """
    try:
        return yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        m = exc.problem_mark
        mark = Mark(m.line + 1, m.column + 1) if m is not None else None
        raise YamlSyntaxError(f"{exc.problem or exc}", mark) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(str(exc), None) from None


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def _build(node: yaml.Node, path: Path_, marks: dict[Path_, Mark]) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *template` keeps 200-camera files short
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    built = _build(source, path, marks)
                    if isinstance(built, dict):
                        merged = {**built, **merged}
                continue
            key = scalar(key_node)
            child = (*path, key)
            marks[child] = _mark(key_node)
            out[key] = _build(value_node, child, marks)
        return {**merged, **out}
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            child = (*path, i)
            marks[child] = _mark(item)
            items.append(_build(item, child, marks))
        return items
    return scalar(node)


def scalar(node: yaml.Node) -> Any:
    """Resolve a scalar with the safe loader's own rules (ints, floats, bools, null)."""
    loader = _Loader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def nearest_mark(marks: dict[Path_, Mark], path: Path_) -> Mark | None:
    """The position of ``path`` or of its closest ancestor that exists in the file."""
    for end in range(len(path), -1, -1):
        found = marks.get(path[:end])
        if found is not None:
            return found
    return None
