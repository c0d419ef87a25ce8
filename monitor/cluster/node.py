"""One node of the cluster: its lease, the cameras it claims, and the fencing token of each claim.

etcd keys (all names here):
  vm/nodes/<node>     {capacity, started} under the node's lease: the node is alive
  vm/members/<node>   the same, without a lease: every node that ever joined (status lists the dead ones too)
  vm/owners/<camera>  the owning node's name, under its lease; the key's create revision is the fencing token

Two threads, never the detection loop. The lease thread renews the lease every TTL/6; if it has not renewed for
2/3 of the TTL (etcd unreachable, or the process was paused) it drops every claim and tells the engine to stop
those cameras, before etcd can have let another node take them. TTL/6, not TTL/3: a renewal that finds one member
cut off and the others electing a leader times out on each in turn (up to 3 x 0.5 s at a 5 s TTL); renewing at
TTL/3 left no time for a second try before 2/3 of the TTL, so one etcd member's partition dropped every node's
cameras (tests/test_cluster_partition.py). The claims thread polls membership and claims
every TTL/6 (bounded to 0.2..1 s): rendezvous over the live nodes says which cameras are this node's; it claims
them with a create-if-absent transaction under its lease and gives up (stop first, then delete if still its own)
those that moved to another node. A camera another node still holds is left alone until that claim goes.

A planned handoff (the camera moved to another node, or left the config) keeps the claim and its token while the
engine stops the camera and delivers its last changes (``hand_over``, bounded), and only then deletes the claim:
the next owner raises the fence after them, so nothing of the old owner's is refused. A lost claim or lease has
no such grace: its token is 0 at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from monitor.cluster.etcd import Etcd, EtcdError
from monitor.cluster.rendezvous import rendezvous
from monitor.config.cluster import ClusterConfig, node_name_problem

log = logging.getLogger(__name__)

NODES = "vm/nodes/"
MEMBERS = "vm/members/"
OWNERS = "vm/owners/"


def node_data_dir(root: Path, node: str) -> Path:
    """A node's own folder in the shared data directory: its outbox, clips, snapshots and live pictures.

    ``data_dir`` may be one shared mount (NFS, CephFS) for every node: each writes only below its own folder, and
    any node's web page serves every file inside ``data_dir``.
    """
    problem = node_name_problem(node)
    if problem is not None:
        raise ValueError(problem)
    return root / "nodes" / node


def owner_key(camera: str) -> str:
    """etcd key of a camera's claim."""
    return f"{OWNERS}{camera}"


def node_capacity(value: bytes) -> float:
    """The capacity a node registered (1 if its record cannot be read)."""
    try:
        return float(json.loads(value)["capacity"])
    except (ValueError, KeyError, TypeError):
        return 1.0


class ClusterNode:
    """Keeps this node registered and its claims in line with rendezvous hashing.

    ``on_claimed(camera, token)`` runs on the claims thread after a claim is won; False gives the claim back (e.g.
    the store could not be read for the takeover: tried again next round). ``on_released(camera, reason)`` says a
    camera must stop now (moved, claim lost, lease lost); it must not block (the engine queues it).
    ``hand_over(camera)``, on a planned handoff only: blocks (bounded, on the claims thread) until the stopped
    camera's changes reached the store; the claim is deleted after it returns.
    """

    def __init__(
        self,
        config: ClusterConfig,
        name: str,
        cameras: Iterable[str],
        on_claimed: Callable[[str, int], bool],
        on_released: Callable[[str, str], None],
        hand_over: Callable[[str], object] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.ttl_s = config.lease_ttl_s
        self.poll_s = min(1.0, max(0.2, self.ttl_s / 6))
        self.timeout_s = min(2.0, max(0.25, self.ttl_s / 10))
        self.on_claimed = on_claimed
        self.on_released = on_released
        self.hand_over = hand_over
        self._lock = threading.Lock()
        self._cameras = tuple(cameras)
        self._lease: int | None = None
        self._renewed = 0.0  # monotonic time a renewal that succeeded was sent
        self._owned: dict[str, int] = {}  # camera -> fencing token
        self._leaving: dict[str, int] = {}  # camera -> token, while a planned handoff delivers its last changes
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._lease_loop, name="cluster-lease", daemon=True),
            threading.Thread(target=self._claims_loop, name="cluster-claims", daemon=True),
        ]

    # -- what the engine asks ------------------------------------------------------------------------
    def token(self, camera: str) -> int:
        """The fencing token of this node's claim on ``camera`` (also while handing it over); 0 when it has none
        (its writes are refused)."""
        with self._lock:
            return self._owned.get(camera) or self._leaving.get(camera, 0)

    def owned(self) -> dict[str, int]:
        """Camera -> token of every claim held now."""
        with self._lock:
            return dict(self._owned)

    def set_cameras(self, cameras: Iterable[str]) -> None:
        """The configured cameras changed (hot reload)."""
        with self._lock:
            self._cameras = tuple(cameras)

    def start(self) -> ClusterNode:
        """Register and start claiming."""
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop, and end the lease so the other nodes take the cameras over at once (not after the TTL)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        with self._lock:
            lease, self._lease = self._lease, None
            self._owned.clear()
            self._leaving.clear()
        if lease is not None:
            etcd = Etcd(self.config.etcd, self.timeout_s)
            try:
                etcd.revoke(lease)
            except EtcdError as exc:
                log.warning("cluster: could not end the lease (its cameras move after %d s): %s", self.ttl_s, exc)
            finally:
                etcd.close()

    # -- the lease -----------------------------------------------------------------------------------
    def _lease_loop(self) -> None:
        etcd = Etcd(self.config.etcd, self.timeout_s)
        try:
            while not self._stop.is_set():
                self._lease_step(etcd)
        finally:
            etcd.close()

    def _lease_step(self, etcd: Etcd) -> None:
        with self._lock:
            lease, renewed = self._lease, self._renewed
        if lease is None:
            self._register(etcd)
            return
        now = time.monotonic()
        if now - renewed >= 2 * self.ttl_s / 3:
            self._lose(f"no lease renewal for {now - renewed:.1f} s (etcd unreachable or this process paused)")
            return
        due = renewed + self.ttl_s / 6
        if now < due:
            self._stop.wait(due - now)
            return
        sent = time.monotonic()
        try:
            left = etcd.keepalive(lease)
        except EtcdError as exc:
            log.warning("cluster: lease renewal failed: %s", exc)
            self._stop.wait(min(self.poll_s / 2, max(0.0, renewed + 2 * self.ttl_s / 3 - time.monotonic())))
            return
        if left <= 0:
            self._lose("the lease expired")
            return
        with self._lock:
            if self._lease == lease:
                self._renewed = sent

    def _register(self, etcd: Etcd) -> None:
        sent = time.monotonic()
        record = json.dumps({"capacity": self.config.capacity_of(self.name), "started": time.time()}).encode()
        try:
            lease = etcd.grant(self.ttl_s)
            etcd.put(f"{NODES}{self.name}", record, lease)
            etcd.put(f"{MEMBERS}{self.name}", record)
        except EtcdError as exc:
            log.warning("cluster: cannot register node %s yet: %s", self.name, exc)
            self._stop.wait(self.poll_s)
            return
        with self._lock:
            self._lease, self._renewed = lease, sent
        log.info("cluster: node %s registered (lease %x, ttl %d s)", self.name, lease, self.ttl_s)

    def _lose(self, reason: str) -> None:
        """Drop every claim now: another node may own them soon, so this one must stop first."""
        with self._lock:
            cameras = sorted(self._owned)
            self._owned.clear()
            self._leaving.clear()
            self._lease = None
        log.error("cluster: node %s lost its lease: %s; stopping %d camera(s)", self.name, reason, len(cameras))
        for camera in cameras:
            self.on_released(camera, "lease_lost")

    # -- the claims ----------------------------------------------------------------------------------
    def _claims_loop(self) -> None:
        etcd = Etcd(self.config.etcd, self.timeout_s)
        try:
            while not self._stop.wait(self.poll_s):
                try:
                    self._reconcile(etcd)
                except EtcdError as exc:
                    log.warning("cluster: claims not checked: %s", exc)
                except Exception:  # never let the claims thread die: the lease thread alone would keep stale claims
                    log.exception("cluster: claims round failed")
        finally:
            etcd.close()

    def _reconcile(self, etcd: Etcd) -> None:
        """One round: keep what is still ours and meant for us, give up what moved, claim what is free and ours."""
        with self._lock:
            lease, owned, cameras = self._lease, dict(self._owned), self._cameras
        if lease is None:
            return
        nodes = {kv.key.removeprefix(NODES): node_capacity(kv.value) for kv in etcd.prefix(NODES)}
        claims = {kv.key.removeprefix(OWNERS): kv for kv in etcd.prefix(OWNERS)}
        plan = rendezvous(cameras, nodes)
        for camera, kv in claims.items():  # ours by lease, yet not held: a handoff whose delete failed
            if kv.lease == lease and camera not in owned:
                etcd.delete_if_created(owner_key(camera), kv.create_revision)
        for camera, token in owned.items():
            claim = claims.get(camera)
            if claim is None or claim.create_revision != token:
                self._drop(camera, token, "claim_lost")
            elif plan.get(camera) != self.name:
                self._hand_over(etcd, camera, token, "camera_moved" if camera in plan else "camera_removed")
                log.info("cluster: camera %s handed over (to %s)", camera, plan.get(camera))
        for camera in cameras:
            if plan.get(camera) != self.name or camera in owned or camera in claims:
                continue  # not ours, ours already, or another node still holds it (until it lets go or dies)
            created = etcd.create(owner_key(camera), self.name.encode(), lease)
            if created is None:
                continue
            with self._lock:
                if self._lease != lease:  # the lease was lost meanwhile: the claim dies with it
                    continue
                self._owned[camera] = token = created
            log.info("cluster: node %s claimed camera %s (token %d)", self.name, camera, token)
            if not self.on_claimed(camera, token) and self._drop(camera, token, "takeover_failed", notify=False):
                etcd.delete_if_created(owner_key(camera), token)

    def _hand_over(self, etcd: Etcd, camera: str, token: int, reason: str) -> None:
        """Stop the camera and let its last changes reach the store under this claim, then delete the claim."""
        with self._lock:
            if self._owned.get(camera) != token:
                return
            self._leaving[camera] = self._owned.pop(camera)
        try:
            self.on_released(camera, reason)
            if self.hand_over is not None:
                self.hand_over(camera)
        finally:
            with self._lock:
                still_ours = self._leaving.pop(camera, None) == token  # not if the lease was lost meanwhile
            if still_ours:
                etcd.delete_if_created(owner_key(camera), token)

    def _drop(self, camera: str, token: int, reason: str, notify: bool = True) -> bool:
        """Forget the claim if it is still the one with ``token``, and stop the camera; False if already gone."""
        with self._lock:
            if self._owned.get(camera) != token:
                return False
            del self._owned[camera]
        if notify:
            self.on_released(camera, reason)
        return True
