"""The trail of account changes (who created, re-roled, reset or deleted which account, when), kept in Redis.

Written in the same Redis transaction as the change itself, by the web API and ``monitor user add`` alike (both go
through ``Auth``), so no change goes unrecorded. Entries are plain facts about accounts: a password, or its hash,
is never part of one. The list is bounded (the newest ``KEEP`` entries) so it cannot grow without end.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import redis

from monitor.store.incidents import PREFIX

KEY = f"{PREFIX}:user_audit"
KEEP = 1000
Action = Literal["created", "role_changed", "password_reset", "deleted"]


@dataclass(frozen=True, slots=True)
class AccountChange:
    """One change to one account. ``by``: the admin who made it, None for the command line (``monitor user
    add``, run on the server). ``role``: the account's role after the change (for ``deleted``: the role it
    had); ``old_role``: the role before a ``role_changed``."""

    at: float
    by: str | None
    action: Action
    user: str
    role: str
    old_role: str | None = None


def record(pipe: redis.client.Pipeline, change: AccountChange) -> None:
    """Queue ``change`` on ``pipe`` (a transaction that also makes the change), keeping the newest ``KEEP``."""
    pipe.lpush(KEY, json.dumps(asdict(change), ensure_ascii=False))
    pipe.ltrim(KEY, 0, KEEP - 1)


def recent(client: redis.Redis, limit: int = KEEP) -> list[AccountChange]:
    """The newest ``limit`` changes, newest first (entries that do not parse are skipped, not fatal)."""
    changes = []
    for raw in client.lrange(KEY, 0, max(limit, 1) - 1):
        try:
            changes.append(_parse(json.loads(raw)))
        except (ValueError, TypeError, KeyError):
            continue
    return changes


def _parse(data: Any) -> AccountChange:
    if data["action"] not in get_args(Action):
        raise ValueError(f"unknown action {data['action']!r}")
    return AccountChange(
        at=float(data["at"]),
        by=None if data["by"] is None else str(data["by"]),
        action=data["action"],
        user=str(data["user"]),
        role=str(data["role"]),
        old_role=None if data.get("old_role") is None else str(data["old_role"]),
    )
