"""The ``cluster:`` section of streams.yaml: several machines share the cameras through etcd (absent: one machine).

Every node runs the same file; which cameras a node runs is decided at run time (monitor/cluster/).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

# A node name is an etcd key segment and a label: letters, digits, '_', '.', '-'; no '/', no spaces.
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def node_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a node, or None when it can."""
    if NODE_NAME.fullmatch(name) and ".." not in name:
        return None
    return f"node name {name!r} may only hold 1-64 ASCII letters, digits, '_', '.' and '-' (first a letter or digit)"


class ClusterConfig(BaseModel):
    """Where the etcd cluster is, how fast a dead node's cameras move, and how much each node can carry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    etcd: tuple[str, ...] = Field(
        min_length=1,
        description="Client URLs of the etcd members, e.g. [http://10.0.0.1:2379, http://10.0.0.2:2379]; any "
        "reachable member serves (give all of them).",
    )
    lease_ttl_s: int = Field(
        10,
        ge=2,
        le=300,
        description="Seconds a node's claims outlive it: a dead or cut-off node's cameras run elsewhere after "
        "about this long; a node that cannot renew for 2/3 of it stops its cameras itself.",
    )
    capacity: dict[str, float] = Field(
        default_factory=dict,
        description="Relative capacity per node name (default 1): a node of capacity 2 gets about twice the cameras.",
    )

    @field_validator("etcd")
    @classmethod
    def _urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
                raise ValueError(f"etcd member {url!r} must be a client URL such as http://10.0.0.1:2379")
            if parts.path.strip("/") or parts.username or parts.password:
                raise ValueError(f"etcd member {url!r} must have no path or user (just the client URL)")
        return tuple(url.rstrip("/") for url in urls)

    @field_validator("capacity")
    @classmethod
    def _capacities(cls, capacity: dict[str, float]) -> dict[str, float]:
        for name, weight in capacity.items():
            problem = node_name_problem(name)
            if problem is not None:
                raise ValueError(problem)
            if not weight > 0:
                raise ValueError(f"capacity of node {name!r} must be more than 0 (got {weight})")
        return capacity

    def capacity_of(self, node: str) -> float:
        """The node's configured capacity (1 unless set)."""
        return self.capacity.get(node, 1.0)
