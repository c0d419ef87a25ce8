"""Live talks in Redis: the speaker-busy lease, and the talk audit list.

One lease per speaker (``speaker_lock_key``, a redis-py lock) says "busy": a test from the web page and a live talk
take it, and the engine's announcer neither starts an announcement on a held speaker nor lets one go on playing
there. A talk's lease expires ``LEASE_TTL_S`` after its last refresh, so a crashed web process frees its speakers
within seconds. The lock's token names the holder (JSON), so a refusal can say who is talking.

  vm:talks   LIST of talk records (JSON, newest first, capped at KEEP): who, when, speakers and each one's result
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import redis
from redis.exceptions import LockError

from monitor.store.incidents import PREFIX, lock_holder, speaker_lock_key

log = logging.getLogger(__name__)

TALKS = f"{PREFIX}:talks"
KEEP = 500
LEASE_TTL_S = 3.0  # a talk refreshes its leases every LEASE_REFRESH_S; a dead web process frees them after this
LEASE_REFRESH_S = 1.0


def speaker_held(client: redis.Redis) -> Callable[[str], bool]:
    """For the engine: whether a test or talk holds the speaker now. Redis unreachable: not held (it plays)."""

    def held(speaker: str) -> bool:
        try:
            return bool(client.exists(speaker_lock_key(speaker)))
        except redis.RedisError:
            return False

    return held


def holder(client: redis.Redis, speaker: str) -> dict[str, Any] | None:
    """Who holds the speaker: a talk's holder record, ``{"what": "test"}`` for a speaker test, None when free."""
    return lock_holder(client.get(speaker_lock_key(speaker)))


class SpeakerLeases:
    """The leases one talk holds; ``refresh`` every LEASE_REFRESH_S keeps them, ``release`` frees them."""

    def __init__(self, client: redis.Redis, owner: Mapping[str, str], ttl_s: float = LEASE_TTL_S) -> None:
        self.client = client
        self.token = json.dumps(dict(owner), ensure_ascii=False, sort_keys=True)
        self.ttl_s = ttl_s
        self.locks: dict[str, redis.lock.Lock] = {}

    def acquire(self, speaker: str) -> bool:
        """Take the speaker's lease; False when a test or another talk holds it."""
        # thread_local=False: the talk's refresher thread extends what the talk's start took
        lock = self.client.lock(speaker_lock_key(speaker), timeout=self.ttl_s, blocking=False, thread_local=False)
        if not lock.acquire(token=self.token):
            return False
        self.locks[speaker] = lock
        return True

    def refresh(self) -> list[str]:
        """Extend every lease to a full TTL again; the speakers whose lease was lost (expired, taken)."""
        lost = []
        for speaker, lock in list(self.locks.items()):
            try:
                lock.reacquire()
            except LockError:
                lost.append(speaker)
                del self.locks[speaker]
        return lost

    def release(self) -> None:
        """Free every lease still held (a lost one is left alone: someone else may hold it now)."""
        for lock in self.locks.values():
            try:
                lock.release()
            except (LockError, redis.RedisError) as exc:
                log.warning("talk: releasing a speaker lease: %s", exc)
        self.locks.clear()


def record_talk(client: redis.Redis, record: Mapping[str, Any]) -> None:
    """Add a finished talk to the audit list (newest first, capped)."""
    pipe = client.pipeline()
    pipe.lpush(TALKS, json.dumps(dict(record), ensure_ascii=False))
    pipe.ltrim(TALKS, 0, KEEP - 1)
    pipe.execute()


def talks(client: redis.Redis, limit: int = KEEP) -> list[dict[str, Any]]:
    """The newest talks first."""
    out = []
    for raw in client.lrange(TALKS, 0, max(0, limit - 1)):
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def talk(client: redis.Redis, talk_id: str) -> dict[str, Any] | None:
    """One talk by its id, or None."""
    return next((t for t in talks(client) if t.get("id") == talk_id), None)
