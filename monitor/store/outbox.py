"""The durable local outbox: every incident change is written here first, then delivered to Redis in order.

Why: Redis may be down, frozen or far away, and the detection loop must neither wait for it nor lose what
happened meanwhile. SQLite in WAL mode (``synchronous=FULL``) keeps the queue across crashes and power cuts.
Besides the queue it keeps this engine's copy of its incidents that are still open, which is what crash
recovery resumes or closes at the next start, and a heartbeat that dates an unclean stop.

If the disk is full and SQLite cannot write, changes wait in memory (in order, after those on disk) and the
outbox says so in ``problem``; nothing is dropped while the process lives, and they move to disk as soon as it
takes writes again.

Clustered (``cluster:``), each change is stamped when queued with the fencing token this node holds for the
incident's camera (0 once it no longer owns it), and delivered with it: a change the store refuses as stale (a
newer owner has the camera) is logged, counted and dropped, never retried. A planned handoff flushes the
camera's changes before its claim goes (``Delivery.flush(fence=...)``), so only a killed or cut-off node loses
what it had not delivered.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from monitor.incident import Incident, IncidentChange
from monitor.store.fencing import StaleWrite

log = logging.getLogger(__name__)

OUTBOX_NAME = "outbox.sqlite3"  # in data_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    fence INTEGER,
    UNIQUE (incident_id, seq)
);
CREATE TABLE IF NOT EXISTS open_incidents (id TEXT PRIMARY KEY, rule TEXT NOT NULL, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Apply(Protocol):
    """The store's ``apply``: a change, with the fencing token it was made under when there is one."""

    def __call__(self, change: IncidentChange, fence: int | None = None, /) -> bool: ...


class Outbox:
    """Ordered, durable queue of ``IncidentChange`` plus the open incidents; safe to use from several threads.

    ``fence_of``: the fencing token this node holds for a camera (clustered engines), stamped on each change.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        if "fence" not in {row[1] for row in self._db.execute("PRAGMA table_info(changes)")}:  # an older outbox
            self._db.execute("ALTER TABLE changes ADD COLUMN fence INTEGER")
        self._lock = threading.Lock()
        self.fence_of: Callable[[str], int] | None = None
        self._memory: deque[tuple[IncidentChange, int | None]] = deque()  # the disk refused; delivered after its
        self._copies_in_memory: dict[str, Incident] = {}  # the newest copy of each incident not yet on disk
        self.problem: str | None = None
        self.added = threading.Event()  # set on every put: wakes the delivery thread

    def put(self, change: IncidentChange, incident: Incident) -> None:
        """Queue ``change`` and keep ``incident`` (the state after it) as this engine's copy while it is open."""
        fence = None if self.fence_of is None else self.fence_of(incident.camera)
        with self._lock:
            if not self._memory or self._spill():
                try:
                    self._write(change, fence, incident)
                    self.added.set()
                    return
                except sqlite3.Error as exc:
                    self.problem = f"outbox not writable ({exc}): changes wait in memory"
                    log.error("%s", self.problem)
            self._memory.append((change, fence))
            self._copies_in_memory[incident.id] = incident
        self.added.set()

    def _spill(self) -> bool:
        """Move the changes that waited in memory to disk, in order, once it takes them (caller holds the lock)."""
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for change, fence in self._memory:
                    self._insert(change, fence)
                for incident in self._copies_in_memory.values():
                    self._keep(incident)
        except sqlite3.Error:
            return False
        log.info("outbox writable again: %d change(s) moved from memory to disk", len(self._memory))
        self._memory.clear()
        self._copies_in_memory.clear()
        self.problem = None
        return True

    def _write(self, change: IncidentChange, fence: int | None, incident: Incident) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._insert(change, fence)
            self._keep(incident)

    def _insert(self, change: IncidentChange, fence: int | None) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO changes (incident_id, seq, body, fence) VALUES (?, ?, ?, ?)",
            (change.incident_id, change.seq, json.dumps(change.to_json(), ensure_ascii=False), fence),
        )

    def _keep(self, incident: Incident) -> None:
        """Keep this engine's copy of an open incident; forget a closed one."""
        if incident.is_open:
            self._db.execute(
                "INSERT OR REPLACE INTO open_incidents (id, rule, record) VALUES (?, ?, ?)",
                (incident.id, incident.rule, json.dumps(incident.to_record(), ensure_ascii=False)),
            )
        else:
            self._db.execute("DELETE FROM open_incidents WHERE id = ?", (incident.id,))

    def pending(self) -> int:
        """Changes not yet delivered (on disk and in memory)."""
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM changes").fetchone()
            return int(count) + len(self._memory)

    def pending_under(self, fence: int) -> int:
        """Changes not yet delivered that were stamped with ``fence`` (one claim on one camera)."""
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM changes WHERE fence = ?", (fence,)).fetchone()
            return int(count) + sum(1 for _, stamped in self._memory if stamped == fence)

    def forget_open(self, camera: str | None = None) -> int:
        """Drop this engine's copies of open incidents (of ``camera``, or all); how many were dropped.

        Clustered, the store is where a camera's open incidents carry on (whoever runs it next); these copies
        only serve a single machine's crash recovery and would otherwise pile up as cameras move away.
        """
        with self._lock:
            kept = list(self._copies_in_memory.values())
            self._copies_in_memory = {i.id: i for i in kept if camera is not None and i.camera != camera}
            dropped = len(kept) - len(self._copies_in_memory)
            try:
                with self._db:
                    if camera is None:
                        cursor = self._db.execute("DELETE FROM open_incidents")
                    else:
                        cursor = self._db.execute(
                            "DELETE FROM open_incidents WHERE json_extract(record, '$.camera') = ?", (camera,)
                        )
            except sqlite3.Error as exc:  # a full disk: they are forgotten at the next start
                log.warning("outbox: open-incident copies not dropped: %s", exc)
                return dropped
            return dropped + cursor.rowcount

    def deliver(self, apply: Apply, limit: int = 200) -> int:
        """Apply queued changes in order until one fails; return how many were delivered.

        ``apply`` raises on a store error (the change stays queued and is tried again later). A change the
        store has already applied (a replay) counts as delivered.
        """
        delivered = 0
        with self._lock:
            rows = self._db.execute("SELECT id, body, fence FROM changes ORDER BY id LIMIT ?", (limit,)).fetchall()
        for row_id, body, fence in rows:
            _apply(apply, IncidentChange.from_json(json.loads(body)), fence)
            with self._lock:
                self._db.execute("DELETE FROM changes WHERE id = ?", (row_id,))
            delivered += 1
        if rows:
            return delivered
        while True:  # the disk's queue is empty: now the changes that waited in memory
            with self._lock:
                if not self._memory:
                    if self._copies_in_memory:  # their changes are delivered; the copies still go to disk
                        self._spill()
                    return delivered
                change, fence = self._memory[0]
            _apply(apply, change, fence)
            with self._lock:
                self._memory.popleft()
            delivered += 1

    def open_incidents(self) -> list[Incident]:
        """This engine's incidents that were open when it last wrote them (for recovery)."""
        with self._lock:
            rows = self._db.execute("SELECT record FROM open_incidents ORDER BY id").fetchall()
        return [Incident.from_record(json.loads(record)) for (record,) in rows]

    def heartbeat(self, ts: float) -> None:
        """Note that the engine was alive at ``ts`` (dates an unclean stop); a full disk is tolerated."""
        try:
            with self._lock, self._db:
                self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('alive', ?)", (repr(ts),))
        except sqlite3.Error as exc:
            log.debug("outbox heartbeat not written: %s", exc)

    def last_alive(self) -> float | None:
        """The last heartbeat (None on a new data directory)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'alive'").fetchone()
        return None if row is None else float(row[0])

    def close(self) -> None:
        """Close the database (what is queued stays for the next start)."""
        with self._lock:
            self._db.close()


def read_waiting(path: Path) -> tuple[list[IncidentChange], dict[str, Incident]]:
    """What an outbox at ``path`` still holds, read-only (its engine may be running and delivering): the queued
    changes in order, and the engine's copies of its open incidents. Nothing when there is no outbox."""
    if not path.exists():
        return [], {}
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        changes = db.execute("SELECT body FROM changes ORDER BY id").fetchall()
        copies = db.execute("SELECT record FROM open_incidents").fetchall()
    finally:
        db.close()
    opened = [Incident.from_record(json.loads(record)) for (record,) in copies]
    return [IncidentChange.from_json(json.loads(body)) for (body,) in changes], {i.id: i for i in opened}


def fold_waiting(
    changes: list[IncidentChange], known: Callable[[str], Incident | None], copies: dict[str, Incident]
) -> dict[str, Incident]:
    """Each incident with queued changes as it will be once they are delivered: from the store's record
    (``known``), else the engine's open copy, else its queued opening; changes already in it are skipped."""
    waiting: dict[str, Incident] = {}
    for change in changes:
        current = waiting.get(change.incident_id)
        if current is None:
            if change.kind == "opened":
                current = Incident.from_record(change.data["record"])
            else:
                current = known(change.incident_id) or copies.get(change.incident_id)
            if current is None:
                continue  # a change to an incident neither the store nor the outbox can show (Redis away)
        if change.seq > current.seq:
            current = current.apply(change)
        waiting[change.incident_id] = current
    return waiting


def _apply(apply: Apply, change: IncidentChange, fence: int | None) -> bool:
    """One change; the token only where it was stamped (one machine: the store never checks)."""
    return apply(change) if fence is None else apply(change, fence)


class Delivery:
    """A thread that delivers the outbox to the store, with backoff while the store fails.

    ``on_error`` is called once per failed attempt (the store-errors metric), ``on_fenced`` once per change the
    store refused as stale (the fenced-changes metric); ``flush`` at shutdown gives it a
    bounded time to empty the queue, and what is left is delivered by the next start. It also writes the
    outbox's heartbeat every ``heartbeat_s`` (what dates an unclean stop for crash recovery).
    """

    def __init__(
        self,
        outbox: Outbox,
        apply: Apply,
        on_error: Callable[[Exception], None] | None = None,
        max_backoff_s: float = 5.0,
        heartbeat_s: float = 5.0,
        on_fenced: Callable[[], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.on_fenced = on_fenced
        self.heartbeat_s = heartbeat_s
        self.apply = apply
        self.on_error = on_error
        self.max_backoff_s = max_backoff_s
        self.last_error: str | None = None
        self.fenced = 0  # changes the store refused as stale (another node owns the camera now): dropped
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-delivery", daemon=True)

    def start(self) -> Delivery:
        """Start delivering."""
        self._thread.start()
        return self

    def _run(self) -> None:
        backoff = 0.2
        next_beat = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_beat:  # here, not on the detection loop: it is a synced disk write
                self.outbox.heartbeat(time.time())
                next_beat = time.monotonic() + self.heartbeat_s
            self.outbox.added.clear()
            try:
                self.outbox.deliver(self._apply_one)
            except Exception as exc:  # Redis down or frozen (RedisError), or anything else: retry, never die
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self.on_error is not None:
                    self.on_error(exc)
                log.warning("store unreachable, %d change(s) wait in the outbox: %s", self.outbox.pending(), exc)
                self._stop.wait(backoff)
                backoff = min(self.max_backoff_s, backoff * 2)
                continue
            backoff, self.last_error = 0.2, None
            if self.outbox.pending() == 0:  # sleep until a change is queued (``put`` sets it) or the next heartbeat
                self.outbox.added.wait(max(0.0, next_beat - time.monotonic()))

    def _apply_one(self, change: IncidentChange, fence: int | None = None, /) -> bool:
        try:
            return _apply(self.apply, change, fence)
        except KeyError as exc:  # the record is gone (deleted by hand): nothing to attach this change to
            log.error("dropping change %s: %s", change.key, exc)
            return False
        except StaleWrite as exc:  # a newer owner has the camera: retrying could never succeed
            self.fenced += 1
            if self.on_fenced is not None:
                self.on_fenced()
            log.warning("dropping change %s (%s): %s", change.key, change.kind, exc)
            return False

    def flush(self, timeout: float, fence: int | None = None) -> bool:
        """Wait up to ``timeout`` for the queue to empty (only the changes stamped ``fence``, when given);
        True if it did. A clustered node hands a camera over after flushing its claim's changes: once the next
        owner raises the fence they would be refused."""
        deadline = time.monotonic() + timeout
        left = self.outbox.pending if fence is None else lambda: self.outbox.pending_under(fence)
        self.outbox.added.set()
        while left() and time.monotonic() < deadline:
            time.sleep(0.05)
        return left() == 0

    def stop(self) -> None:
        """Stop the thread (what is queued stays in the outbox)."""
        self._stop.set()
        self.outbox.added.set()
        self._thread.join(10)
