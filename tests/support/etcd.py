"""A real etcd cluster (Debian's etcd-server) of three members on free loopback ports, one test long.

Members can be killed (SIGKILL) and started again on the same ports and data directories, as in production. A member
may also live at another address, listen for clients on more, or run inside a network namespace (``host``,
``also``, ``wrap``; tests/support/netns.py), set before the cluster starts.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port, stop


@dataclass
class EtcdMember:
    """One etcd member: its name, ports and process."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"  # where clients and the other members reach it
    also: tuple[str, ...] = ()  # more addresses its client port listens on (e.g. for clients in a namespace)
    wrap: Callable[[list[str]], list[str]] | None = None  # how to start it elsewhere (e.g. ``Namespace.wrap``)

    @property
    def client_url(self) -> str:
        """Where clients reach it."""
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        """Where the other members reach it."""
        return f"http://{self.host}:{self.peer_port}"

    def client_url_at(self, host: str) -> str:
        """Its client URL at another address it listens on (one of ``also``)."""
        return f"http://{host}:{self.client_port}"


class EtcdCluster:
    """Three members started with a static ``--initial-cluster``."""

    def __init__(self, root: Path, size: int = 3, pre_vote: bool = False) -> None:
        self.exe = shutil.which("etcd") or pytest.skip("apt-get install etcd-server")
        self.root = root
        self.pre_vote = pre_vote  # etcd 3.4's default is off; 3.5+ has it on
        self.members = [EtcdMember(f"m{i}", free_port(), free_port(), root / f"m{i}") for i in range(size)]

    @property
    def initial(self) -> str:
        """``--initial-cluster``: every member's name and peer URL."""
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> list[str]:
        """Client URLs of every member (what ``cluster.etcd`` lists)."""
        return [m.client_url for m in self.members]

    def start(self, member: EtcdMember) -> None:
        """Start (or restart) one member; it rejoins with its data directory."""
        listen = ",".join([member.client_url, *map(member.client_url_at, member.also)])
        args = [
            self.exe, "--name", member.name, "--data-dir", str(member.data_dir),
            "--listen-client-urls", listen, "--advertise-client-urls", member.client_url,
            "--listen-peer-urls", member.peer_url, "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", self.initial, "--initial-cluster-state", "new",
            "--initial-cluster-token", "vm-test", "--heartbeat-interval", "100", "--election-timeout", "1000",
            f"--pre-vote={str(self.pre_vote).lower()}",
        ]  # fmt: skip
        with (self.root / f"{member.name}.log").open("ab") as log:
            member.proc = subprocess.Popen(member.wrap(args) if member.wrap else args, stdout=log, stderr=log)

    def healthy(self, member: EtcdMember) -> bool:
        """The member answers and has a leader."""
        try:
            reply = httpx.get(f"{member.client_url}/health", timeout=1)
            return reply.status_code == 200 and reply.json().get("health") == "true"
        except (httpx.HTTPError, ValueError):
            return False

    def wait_healthy(self, members: list[EtcdMember] | None = None, timeout: float = 30) -> None:
        """Poll until the given members (default all) answer with a leader."""
        deadline = time.monotonic() + timeout
        for member in members or self.members:
            while not self.healthy(member):
                if time.monotonic() > deadline:
                    pytest.fail(f"etcd member {member.name} not healthy within {timeout} s:\n{self.log_tail()}")
                time.sleep(0.1)

    def log_tail(self, chars: int = 1500) -> str:
        """The end of every member's log (elections, timeouts): what a failing test shows."""
        return "\n".join(f"--- {m.name}\n" + (self.root / f"{m.name}.log").read_text()[-chars:] for m in self.members)

    def leader(self) -> EtcdMember:
        """The member that leads now (killing it is the hard case: the others must elect a new one)."""
        for member in self.members:
            if member.proc is None or member.proc.poll() is not None:
                continue
            try:
                status = httpx.post(f"{member.client_url}/v3/maintenance/status", json={}, timeout=2).json()
            except (httpx.HTTPError, ValueError):
                continue
            if status.get("leader") == status["header"]["member_id"]:
                return member
        pytest.fail("no etcd member says it leads")

    def kill(self, member: EtcdMember) -> None:
        """SIGKILL one member."""
        assert member.proc is not None
        member.proc.send_signal(signal.SIGKILL)
        member.proc.wait(10)

    def close(self) -> None:
        """Stop every member."""
        for member in self.members:
            if member.proc is not None:
                stop(member.proc)


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A healthy three-member etcd cluster on loopback."""
    cluster = EtcdCluster(tmp_path / "etcd")
    cluster.root.mkdir()
    for member in cluster.members:
        cluster.start(member)
    cluster.wait_healthy()
    yield cluster
    cluster.close()
