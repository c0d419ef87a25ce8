"""Fencing tokens: a camera's store writes are refused once a newer owner of the camera has written.

With several machines (``cluster:``) a camera's owner holds a claim in etcd; the claim's etcd revision is its
fencing token, and a later claim always has a higher one. Redis keeps per camera the highest token it has seen
(``vm:fence:<camera>``). A write that carries a lower token comes from an owner that was paused or cut off while
another took over: it is refused, atomically with the check, and counted per camera in ``vm:fenced``.

Two ways to be atomic, one rule: the status hash and a takeover are single Lua scripts; incident changes are
WATCH/MULTI transactions already (their merge is Python, ``Incident.apply``), so they WATCH the fence key too and
``guard`` reads it inside the transaction: a takeover between the check and EXEC aborts the EXEC and the retry
sees the new token. A write without a token (one machine, no ``cluster:``) is never checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import redis

PREFIX = "vm:fence:"
REJECTED = "vm:fenced"  # HASH camera -> writes refused as stale


def fence_key(camera: str) -> str:
    """Redis key of the highest fencing token seen for a camera."""
    return f"{PREFIX}{camera}"


class StaleWrite(Exception):
    """A write carried a token lower than one the store has already seen for the camera."""

    def __init__(self, camera: str, token: int, current: int) -> None:
        super().__init__(f"camera {camera}: fencing token {token} is older than {current} (another node owns it)")
        self.camera = camera
        self.token = token
        self.current = current


# KEYS: fence. ARGV: token. Raise the fence to the token; 0 if a newer one is there already.
_ADVANCE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) < current then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

# KEYS: fence, status hash, camera set, rejected counter. ARGV: token, ttl, camera, field, value, ...
_STATUS = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) < current then
  redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
  return 0
end
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[2], 'fence', ARGV[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""


def advance(client: redis.Redis, camera: str, token: int) -> bool:
    """A new owner raises the camera's fence before it reads the camera's state: from then on the old owner's
    writes are refused, so what it reads is final. False: a newer claim has written already."""
    return bool(client.eval(_ADVANCE, 1, fence_key(camera), token))


def fenced_status(
    client: redis.Redis, camera: str, token: int, status_key: str, cameras_key: str, status: Mapping[str, Any],
    ttl_s: int,
) -> bool:  # fmt: skip
    """Write a camera's status hash (with its token in ``fence``) unless a newer owner has written; False if not."""
    flat: list[Any] = [item for pair in status.items() for item in pair]
    keys = (fence_key(camera), status_key, cameras_key, REJECTED)
    return bool(client.eval(_STATUS, len(keys), *keys, token, ttl_s, camera, *flat))


def guard(pipe: redis.client.Pipeline, camera: str, token: int) -> bool:
    """Inside a WATCH transaction, before MULTI: watch and check the fence; True if the token raises it.

    Raises ``StaleWrite`` for an old token (the transaction is abandoned, nothing written).
    """
    key = fence_key(camera)
    pipe.watch(key)  # type: ignore[no-untyped-call]
    raw = cast("bytes | None", pipe.get(key))
    current = int(raw) if raw is not None else 0
    if token < current:
        raise StaleWrite(camera, token, current)
    return token > current


def raise_fence(pipe: redis.client.Pipeline, camera: str, token: int) -> None:
    """Inside MULTI, after ``guard`` returned True: keep the token as the camera's highest."""
    pipe.set(fence_key(camera), token)


def count_rejected(client: redis.Redis, camera: str) -> None:
    """Count a refused write (the Lua path counts its own)."""
    client.hincrby(REJECTED, camera, 1)


def rejected(client: redis.Redis) -> dict[str, int]:
    """Refused writes per camera, for tests and operators."""
    raw = cast("dict[bytes, bytes]", client.hgetall(REJECTED))
    return {k.decode(): int(v) for k, v in raw.items()}
