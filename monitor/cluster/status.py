"""``monitor cluster status``: the nodes, whether each is alive, and who runs each configured camera.

The JSON contract: ``{"nodes": [{"name", "alive", "capacity", "cameras": [...]}], "cameras": {camera: node | null}}``
(a camera nobody has claimed, e.g. while its owner's lease runs out, is null).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from monitor.cluster.etcd import Etcd, KeyValue
from monitor.cluster.node import MEMBERS, NODES, OWNERS, node_capacity
from monitor.config.cluster import ClusterConfig


def summarize(cameras: Iterable[str], alive: list[KeyValue], members: list[KeyValue], owners: list[KeyValue]) -> (
    dict[str, Any]
):  # fmt: skip
    """The status document from what etcd holds (pure)."""
    capacity = {kv.key.removeprefix(MEMBERS): node_capacity(kv.value) for kv in members}
    capacity.update({kv.key.removeprefix(NODES): node_capacity(kv.value) for kv in alive})
    live = {kv.key.removeprefix(NODES) for kv in alive}
    claims = {kv.key.removeprefix(OWNERS): kv.value.decode() for kv in owners}
    owner = {camera: claims.get(camera) for camera in cameras}
    nodes = [
        {
            "name": name,
            "alive": name in live,
            "capacity": capacity[name],
            "cameras": sorted(camera for camera, node in owner.items() if node == name),
        }
        for name in sorted(capacity)
    ]
    return {"nodes": nodes, "cameras": owner}


def read_status(config: ClusterConfig, cameras: Iterable[str]) -> dict[str, Any]:
    """Ask etcd (raises ``EtcdError`` when no member answers)."""
    etcd = Etcd(config.etcd, timeout_s=2.0)
    try:
        return summarize(cameras, etcd.prefix(NODES), etcd.prefix(MEMBERS), etcd.prefix(OWNERS))
    finally:
        etcd.close()
