"""A network namespace joined to the test's own by a veth pair: a real link a test can cut and heal.

Processes started inside (``wrap``) reach the test's namespace only over the pair's private /30, so setting a
link end down partitions them for real: packets vanish, connections hang until their timeouts, as on a cut
cable, not a refused port or a killed process. Needs root and iproute2 (CI runs pytest as root inside
``unshare --net``). Names and addresses derive from the process id, so parallel runs outside ``unshare`` do not
collide; the namespace and both link ends are removed however the test ends.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

_serial = itertools.count()


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)


def _check(result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, result.args))}: {result.stderr.strip()}")


@dataclass(frozen=True)
class Namespace:
    """A namespace ``name``; its end of the link is ``inner_dev`` at ``inner``, the test's is ``outer_dev`` at
    ``outer``."""

    name: str
    outer_dev: str
    inner_dev: str
    outer: str
    inner: str

    def wrap(self, args: Sequence[str]) -> list[str]:
        """The command that runs ``args`` inside the namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.name, *args]

    def _link(self, state: str, inside: bool) -> None:
        if inside:
            _check(_ip("-n", self.name, "link", "set", self.inner_dev, state))
        else:
            _check(_ip("link", "set", self.outer_dev, state))

    def cut(self, inside: bool = False) -> None:
        """Take the link down: by default the test's end (its address stops routing there, the namespace's
        packets are dropped silently, as behind a dead switch port); ``inside``: the namespace's end (the test's
        address stays local, so processes of the test's namespace may keep using it among themselves)."""
        self._link("down", inside)

    def heal(self, inside: bool = False) -> None:
        """Bring the end that ``cut`` took down up again (the kernel restores its routes)."""
        self._link("up", inside)


def _addresses(slot: int) -> tuple[str, str]:
    """The two hosts of /30 number ``slot`` in 10.203.0.0/16."""
    base = slot * 4
    return f"10.203.{base // 256}.{base % 256 + 1}", f"10.203.{base // 256}.{base % 256 + 2}"


def _create(ns: Namespace) -> None:
    steps = [
        ("link", "add", ns.outer_dev, "type", "veth", "peer", "name", ns.inner_dev),
        ("link", "set", ns.inner_dev, "netns", ns.name),
        ("addr", "add", f"{ns.outer}/30", "dev", ns.outer_dev),
        ("link", "set", ns.outer_dev, "up"),
        ("-n", ns.name, "link", "set", "lo", "up"),
        ("-n", ns.name, "addr", "add", f"{ns.inner}/30", "dev", ns.inner_dev),
        ("-n", ns.name, "link", "set", ns.inner_dev, "up"),
    ]
    for step in steps:
        _check(_ip(*step))


def _remove(ns: Namespace) -> None:
    """Delete the namespace and the pair (deleting one end deletes both; the root end may outlive the namespace's
    name while a process still runs inside)."""
    _ip("netns", "delete", ns.name)
    if _ip("link", "show", ns.outer_dev).returncode == 0:
        _ip("link", "delete", ns.outer_dev)


@pytest.fixture
def netns() -> Iterator[Namespace]:
    """A fresh namespace linked to the test's (skipped without root or iproute2's ``ip netns``)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CI runs the suite as root inside `unshare --net`)")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's `ip` for network namespaces")
    slot = (os.getpid() * 8 + next(_serial)) % (256 * 64)
    outer, inner = _addresses(slot)
    ns = Namespace(f"vm-test-{os.getpid()}-{slot}", f"vm{slot}o", f"vm{slot}i", outer, inner)
    added = _ip("netns", "add", ns.name)
    if added.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {added.stderr.strip()}")
    try:
        _create(ns)
        yield ns
    finally:
        _remove(ns)
