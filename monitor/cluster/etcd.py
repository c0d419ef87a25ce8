"""A small etcd v3 client over etcd's own JSON gateway (``/v3/kv/*``, ``/v3/lease/*``), with member failover.

Why not a gRPC client from PyPI: ``etcd3`` (python-etcd3) had its last release in 2020 and ships protobuf code
generated for protobuf 3; with the protobuf 4+ that onnx and openvino need here, ``import etcd3`` fails
("Descriptors cannot be created directly", kragniz/python-etcd3#1957, #2709). The gateway is part of every etcd
3.x server, documented and versioned with it (``/v3`` since 3.4), and needs only ``httpx``. Keys and values are
base64 in it, 64-bit numbers are JSON strings.

Every call has a short timeout and tries the members in turn (starting with the last one that answered), so a
dead or cut-off member costs one timeout, never a hang. The calls used: lease grant/keep-alive/revoke, range
over a prefix, put, and the two transactions the claims need (create if absent, delete if still ours).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx


class EtcdError(Exception):
    """No member answered the call (all down, cut off, or without a leader)."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key as etcd keeps it; ``create_revision`` of a claim is its fencing token."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def _prefix_end(prefix: str) -> str:
    """The range end that covers every key starting with ``prefix`` (its last byte plus one)."""
    raw = prefix.encode()
    return _b64(raw[:-1] + bytes([raw[-1] + 1]))


class Etcd:
    """A client for one thread (give each thread its own: httpx pools are per client)."""

    def __init__(self, endpoints: Sequence[str], timeout_s: float = 1.0) -> None:
        self.endpoints = list(endpoints)
        self._client = httpx.Client(timeout=timeout_s)
        self._first = 0  # the member that answered last

    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        problems = []
        for i in range(len(self.endpoints)):
            index = (self._first + i) % len(self.endpoints)
            url = self.endpoints[index] + path
            try:
                reply = self._client.post(url, json=body)
            except httpx.HTTPError as exc:
                problems.append(f"{self.endpoints[index]}: {type(exc).__name__}")
                continue
            if reply.status_code != 200:  # e.g. 503 "no leader" from a member cut off from the majority
                problems.append(f"{self.endpoints[index]}: HTTP {reply.status_code} {reply.text[:200]}")
                continue
            self._first = index
            data = reply.json()
            result = data.get("result", data)  # keep-alive is a stream: one message wrapped in "result"
            return dict(result)
        raise EtcdError("; ".join(problems))

    # -- leases ------------------------------------------------------------------------------------
    def grant(self, ttl_s: int) -> int:
        """A new lease of ``ttl_s`` seconds; its id."""
        return int(self._call("/v3/lease/grant", {"TTL": ttl_s})["ID"])

    def keepalive(self, lease: int) -> int:
        """Renew the lease; the seconds it now has left (0: it has expired, its keys are gone)."""
        return int(self._call("/v3/lease/keepalive", {"ID": str(lease)}).get("TTL", 0))

    def revoke(self, lease: int) -> None:
        """End the lease now (its keys go with it)."""
        self._call("/v3/lease/revoke", {"ID": str(lease)})

    # -- keys --------------------------------------------------------------------------------------
    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        """Set a key (under a lease: it goes when the lease ends); the revision of the write."""
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        return int(self._call("/v3/kv/put", body)["header"]["revision"])

    def prefix(self, prefix: str) -> list[KeyValue]:
        """Every key under ``prefix`` (a linearizable read: what the majority agreed on)."""
        reply = self._call("/v3/kv/range", {"key": _b64(prefix), "range_end": _prefix_end(prefix)})
        return [
            KeyValue(
                base64.b64decode(kv["key"]).decode(),
                base64.b64decode(kv.get("value", "")),
                int(kv.get("create_revision", 0)),
                int(kv.get("mod_revision", 0)),
                int(kv.get("lease", 0)),
            )
            for kv in reply.get("kvs", [])
        ]

    def _created_at(self, key: str, revision: int) -> dict[str, Any]:
        """A txn comparison: ``key`` was created at ``revision`` (0: it does not exist)."""
        return {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": str(revision)}

    def create(self, key: str, value: bytes, lease: int) -> int | None:
        """Set ``key`` under ``lease`` only if it does not exist: the revision of the write, or None if it did."""
        reply = self._call(
            "/v3/kv/txn",
            {
                "compare": [self._created_at(key, 0)],
                "success": [{"request_put": {"key": _b64(key), "value": _b64(value), "lease": str(lease)}}],
            },
        )
        return int(reply["header"]["revision"]) if reply.get("succeeded") else None

    def delete_if_created(self, key: str, revision: int) -> bool:
        """Delete ``key`` only if it is still the one written at ``revision`` (our claim, not a later one)."""
        reply = self._call(
            "/v3/kv/txn",
            {
                "compare": [self._created_at(key, revision)],
                "success": [{"request_delete_range": {"key": _b64(key)}}],
            },
        )
        return bool(reply.get("succeeded"))

    def close(self) -> None:
        """Close the connections."""
        self._client.close()
