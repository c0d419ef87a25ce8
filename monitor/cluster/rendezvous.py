"""Weighted rendezvous (highest random weight) hashing: which live node runs each camera.

Each (camera, node) pair gets a pseudo-random number h in (0, 1) from a hash; the node's score is
``-capacity / ln(h)`` and the highest score wins. A node of capacity 2 wins about twice as often, and a node
joining only takes cameras it now wins (about its share) while one leaving gives up only its own: no other camera
moves. Every node computes the same answer from the same membership, without talking to the others.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping


def _unit(camera: str, node: str) -> float:
    """A stable pseudo-random number in (0, 1) for the pair (64 bits of BLAKE2b)."""
    digest = hashlib.blake2b(f"{node}\0{camera}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2.0**64


def score(camera: str, node: str, capacity: float) -> float:
    """The node's weight for the camera (higher wins)."""
    return -capacity / math.log(_unit(camera, node))


def rendezvous(cameras: Iterable[str], nodes: Mapping[str, float]) -> dict[str, str]:
    """Camera -> the node that should run it; empty when no node has a capacity above 0.

    Ties (practically impossible) go to the node whose name sorts first, so every node agrees.
    """
    live = sorted((name, capacity) for name, capacity in nodes.items() if capacity > 0)
    return {camera: _winner(camera, live) for camera in cameras} if live else {}


def _winner(camera: str, live: list[tuple[str, float]]) -> str:
    best, best_score = live[0][0], score(camera, *live[0])
    for name, capacity in live[1:]:
        if (s := score(camera, name, capacity)) > best_score:  # strictly: a tie keeps the earlier name
            best, best_score = name, s
    return best
