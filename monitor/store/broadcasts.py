"""Broadcast plays: a local ledger (SQLite) of slots played and records not yet in Redis, and the Redis side.

Why a ledger: which slot last played must survive a restart (a restart at 07:30:30 must not play the 07:30
broadcast again) whether or not Redis is up, and a play recorded while Redis is down must reach it later, also
across a restart. Records wait in the ledger and are delivered in order; the Redis side keeps the newest
``PLAYS_MAX`` plays and the last play of each broadcast.

Redis keys: vm:broadcasts:plays  LIST of JSON play records, newest first (trimmed)
            vm:broadcasts:last   HASH broadcast name -> JSON of its newest play
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import redis

from monitor.store.incidents import PREFIX

PLAYS = f"{PREFIX}:broadcasts:plays"
LAST = f"{PREFIX}:broadcasts:last"
PLAYS_MAX = 500

SCHEMA = """
CREATE TABLE IF NOT EXISTS slots (name TEXT PRIMARY KEY, slot REAL NOT NULL);
CREATE TABLE IF NOT EXISTS pending (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
"""


class BroadcastLedger:
    """The last slot played per broadcast and the play records waiting for Redis; safe from several threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def last_slot(self, name: str) -> float | None:
        """The newest slot of ``name`` that was played (queued), or None."""
        with self._lock:
            row = self._db.execute("SELECT slot FROM slots WHERE name = ?", (name,)).fetchone()
        return None if row is None else float(row[0])

    def mark_played(self, name: str, slot: float) -> None:
        """Note that ``slot`` of ``name`` was played (before it is queued: a crash mid-play does not replay it)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO slots (name, slot) VALUES (?, ?)", (name, slot))

    def add(self, record: dict[str, Any]) -> None:
        """Keep a play record until Redis has it."""
        with self._lock:
            self._db.execute("INSERT INTO pending (body) VALUES (?)", (json.dumps(record, ensure_ascii=False),))

    def pending(self, limit: int = 100) -> list[tuple[int, dict[str, Any]]]:
        """The oldest records not yet delivered, with their ids."""
        with self._lock:
            rows = self._db.execute("SELECT id, body FROM pending ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [(int(row_id), dict(json.loads(body))) for row_id, body in rows]

    def delivered(self, row_id: int) -> None:
        """Forget a record Redis now has."""
        with self._lock:
            self._db.execute("DELETE FROM pending WHERE id = ?", (row_id,))

    def close(self) -> None:
        """Close the database (pending records stay for the next start)."""
        with self._lock:
            self._db.close()


class BroadcastRecords:
    """The plays in Redis; each method is one round trip."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def add(self, record: dict[str, Any]) -> None:
        """Add a play (newest first) and make it its broadcast's last play."""
        body = json.dumps(record, ensure_ascii=False)
        pipe = self.r.pipeline(transaction=True)
        pipe.lpush(PLAYS, body)
        pipe.ltrim(PLAYS, 0, PLAYS_MAX - 1)
        pipe.hset(LAST, str(record["broadcast"]), body)
        pipe.execute()

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest plays, newest first."""
        return [dict(json.loads(raw)) for raw in self.r.lrange(PLAYS, 0, max(0, limit - 1))]

    def last(self) -> dict[str, dict[str, Any]]:
        """Each broadcast's newest play."""
        raw: dict[Any, Any] = self.r.hgetall(LAST)
        return {(k.decode() if isinstance(k, bytes) else str(k)): dict(json.loads(v)) for k, v in raw.items()}
