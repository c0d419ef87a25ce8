"""The engine's side of the cluster: a won claim becomes a camera that carries on, a lost one a camera that stops.

A takeover is prepared on the claims thread, never the detection loop: raise the camera's fence in Redis to the
new token first (from then on the previous owner's writes are refused, so what is read next is final), then read
the camera's open incidents and when its previous owner last published its status. The engine's loop then runs
the same recovery plan as after a crash (monitor/runtime/recovery.py) with the store as the source: the same
incident carries on with its rule's state and announcement cooldown. Giving a camera up stops it without closing
its incidents: they are the next owner's. A planned handoff waits (at most ``HANDOVER_S``) for the engine to say
the camera's last changes reached the store before the claim goes; a killed node loses only what it had not
delivered (its late changes are refused by the fence).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis

from monitor.cluster.node import ClusterNode
from monitor.config.cluster import ClusterConfig
from monitor.incident import Incident
from monitor.store import fencing
from monitor.store.incidents import IncidentStore

log = logging.getLogger(__name__)

HANDOVER_S = 8.0  # a planned handoff waits this long at most for the camera's last changes (the camera is idle)


@dataclass(frozen=True, slots=True)
class TakeOn:
    """Start the camera: this node owns it under ``token``; carry on ``incidents`` (open in the store)."""

    camera: str
    token: int
    incidents: tuple[Incident, ...]
    last_alive: float | None  # when the previous owner last published the camera's status


@dataclass(frozen=True, slots=True)
class LetGo:
    """Stop the camera now, leaving its incidents open for the next owner.

    ``token``: the claim being given up; on a planned handoff (``planned``) the engine sets ``delivered`` once the
    camera's changes under it reached the store, and the claim is deleted only then (or after ``HANDOVER_S``).
    """

    camera: str
    reason: str
    token: int = 0
    delivered: threading.Event = field(default_factory=threading.Event, compare=False)

    @property
    def planned(self) -> bool:
        """Moved or removed (the claim is still ours): not a lost claim or lease."""
        return self.reason in PLANNED


PLANNED = ("camera_moved", "camera_removed")


class Ownership:
    """Claims, takeovers and the queue of start/stop commands the engine's loop drains."""

    def __init__(self, config: ClusterConfig, node: str, cameras: Iterable[str], store: IncidentStore) -> None:
        self.store = store
        self.node = ClusterNode(config, node, cameras, self._claimed, self._released, self._hand_over)
        self._commands: queue.SimpleQueue[TakeOn | LetGo] = queue.SimpleQueue()
        self._handing: dict[str, LetGo] = {}  # camera -> its planned handoff (claims thread only)

    def _claimed(self, camera: str, token: int) -> bool:
        try:
            if not fencing.advance(self.store.r, camera, token):
                log.error("cluster: camera %s: a newer claim than %d has written already", camera, token)
                return False
            incidents = tuple(self.store.open_incidents(camera))
            last_alive = self.store.camera_updated(camera)
        except redis.RedisError as exc:
            log.warning("cluster: camera %s not taken over (store unreachable, tried again): %s", camera, exc)
            return False
        self._commands.put(TakeOn(camera, token, incidents, last_alive))
        return True

    def _released(self, camera: str, reason: str) -> None:
        command = LetGo(camera, reason, self.node.token(camera))
        if command.planned:
            self._handing[camera] = command
        self._commands.put(command)

    def _hand_over(self, camera: str) -> None:
        command = self._handing.pop(camera, None)
        if command is not None and not command.delivered.wait(HANDOVER_S):
            log.warning("cluster: camera %s handed over before its last changes were delivered (%.0f s)", camera,
                        HANDOVER_S)  # fmt: skip

    def commands(self) -> list[TakeOn | LetGo]:
        """What to start and stop, in order (never blocks)."""
        out: list[TakeOn | LetGo] = []
        while True:
            try:
                out.append(self._commands.get_nowait())
            except queue.Empty:
                return out

    def token(self, camera: str) -> int:
        """This node's fencing token for ``camera`` (0: not its own)."""
        return self.node.token(camera)

    def start(self) -> Ownership:
        """Join the cluster."""
        self.node.start()
        return self

    def stop(self) -> None:
        """Leave the cluster (the other nodes take the cameras over at once)."""
        self.node.stop()
