"""Speaker groups: a rule or camera may name a group ("square") instead of listing every horn in it.

Kept pure (names in, names out) so config validation and the announcer resolve groups the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


class SpeakerGroupError(ValueError):
    """A group refers to an unknown name or to itself; the message shows the path that failed."""


def expand_speakers(
    names: Iterable[str],
    groups: Mapping[str, Sequence[str]],
    speakers: Iterable[str] | None = None,
) -> list[str]:
    """Resolve group names (recursively) to speaker names, first occurrence wins, order kept.

    ``speakers``, when given, is the set of known speaker names: anything that is neither a group nor a known
    speaker raises SpeakerGroupError. Without it, non-group names pass through unchecked. A group that
    (indirectly) contains itself raises SpeakerGroupError naming the cycle, instead of recursing forever.
    """
    known = None if speakers is None else set(speakers)
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        for speaker in _expand_one(name, groups, known, ()):
            if speaker not in seen:
                seen.add(speaker)
                out.append(speaker)
    return out


def _expand_one(
    name: str, groups: Mapping[str, Sequence[str]], known: set[str] | None, path: tuple[str, ...]
) -> list[str]:
    if name in path:
        raise SpeakerGroupError(f"speaker group cycle: {' -> '.join((*path, name))}")
    if name in groups:
        if known is not None and name in known:
            raise SpeakerGroupError(f"{name!r} is both a speaker and a speaker group")
        members: list[str] = []
        for member in groups[name]:
            members.extend(_expand_one(member, groups, known, (*path, name)))
        return members
    if known is not None and name not in known:
        where = f" (in group {' -> '.join(path)})" if path else ""
        raise SpeakerGroupError(f"unknown speaker or speaker group {name!r}{where}")
    return [name]
