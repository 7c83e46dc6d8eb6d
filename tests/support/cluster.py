"""A throwaway Redis Cluster: 3 masters + 3 replicas on free loopback ports, in temporary dirs.

Real servers, as for the single Redis (tests/support/services.py): tests kill masters and move
slots under a running app. `cluster-node-timeout` is short so a replica is promoted within a few
seconds of its master's death.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.services import RedisServer, free_port, wait_port

NODE_TIMEOUT_MS = 1000


class ClusterNode(RedisServer):
    """One cluster-enabled redis-server (its own dir, config file and port)."""

    def start(self) -> ClusterNode:
        subprocess.run(
            [
                self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--daemonize", "yes", "--dir", str(self.dir),
                "--pidfile", str(self.dir / "redis.pid"), "--logfile", str(self.dir / "redis.log"),
                "--cluster-enabled", "yes", "--cluster-config-file", str(self.dir / "nodes.conf"),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                # A shard without its master stops serving only its own slots, not the whole cluster.
                "--cluster-require-full-coverage", "no",
                # A replica may take over however long ago it last heard its master (the default
                # refuses when the master died before the replica's first sync completed).
                "--cluster-replica-validity-factor", "0",
            ],
            check=True,
        )
        wait_port(self.port)
        return self

    def command(self, *args: str, timeout: float = 10) -> str:
        """A redis-cli command on this node; its plain output."""
        return subprocess.run([self.cli, "-p", str(self.port), *args], capture_output=True, text=True,
                              check=False, timeout=timeout).stdout


class RedisClusterServers:
    """Six nodes made into a cluster with `redis-cli --cluster create`; `url` names one of them."""

    def __init__(self, masters: int = 3, replicas_per_master: int = 1) -> None:
        self.masters = masters
        self.replicas_per_master = replicas_per_master
        self.dir = Path(tempfile.mkdtemp(prefix="vonix-cluster-"))
        self.nodes = [ClusterNode(free_port()) for _ in range(masters * (1 + replicas_per_master))]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> RedisClusterServers:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        created = subprocess.run(
            [self.nodes[0].cli, "--cluster", "create", *addresses, "--cluster-replicas",
             str(self.replicas_per_master), "--cluster-yes"],
            capture_output=True, text=True, check=False, timeout=60)
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout}\n{created.stderr}")
        self.wait_ok()
        return self

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Until every live node says cluster_state:ok and every live replica is in sync with its
        master (a failover test kills a master: its replica must hold the data by then)."""
        deadline = time.monotonic() + timeout
        while True:
            live = self.live()
            states = [node.command("cluster", "info") for node in live]
            replicas = [node.command("info", "replication") for node in live]
            if states and all("cluster_state:ok" in state for state in states) and all(
                    "master_link_status:up" in info for info in replicas if "role:slave" in info):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not ok after {timeout}s: {states}")
            time.sleep(0.1)

    def live(self) -> list[ClusterNode]:
        alive = []
        for node in self.nodes:
            try:
                wait_port(node.port, timeout=0.05)
            except TimeoutError:
                continue
            alive.append(node)
        return alive

    def masters_now(self) -> list[ClusterNode]:
        """The live nodes that are masters (by their own `ROLE`)."""
        return [node for node in self.live() if node.command("role").startswith("master")]

    def master_for_slot(self, slot: int) -> ClusterNode:
        for node in self.masters_now():
            for start, end, port in _slot_ranges(node.command("cluster", "slots")):
                if start <= slot <= end:
                    return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no master owns slot {slot}")

    def migrate_slot(self, slot: int, to: ClusterNode, between: Callable[[], None] | None = None) -> None:
        """Move one hash slot and its keys to master `to` (what `redis-cli --cluster reshard` does
        for each slot), then tell every master who owns it now, the old owner first. `between` runs
        after the old owner gave the slot away and before the others heard of it: the moment when
        the old owner answers MOVED to the new one and the new one, still importing, MOVED back."""
        source = self.master_for_slot(slot)
        if source.port == to.port:
            return
        source_id, target_id = source.command("cluster", "myid").strip(), to.command("cluster", "myid").strip()
        _ok(to.command("cluster", "setslot", str(slot), "importing", source_id))
        _ok(source.command("cluster", "setslot", str(slot), "migrating", target_id))
        while keys := source.command("cluster", "getkeysinslot", str(slot), "100").split():
            _ok(source.command("migrate", "127.0.0.1", str(to.port), "", "0", "5000", "keys", *keys))
        _ok(source.command("cluster", "setslot", str(slot), "node", target_id))
        if between is not None:
            between()
        for node in self.masters_now():
            if node.port != source.port:
                _ok(node.command("cluster", "setslot", str(slot), "node", target_id))
        self.wait_ok()

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


def _slot_ranges(output: str) -> list[tuple[int, int, int]]:
    """(start, end, master port) from redis-cli's plain `CLUSTER SLOTS` output."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    ranges = []
    i = 0
    while i + 3 < len(lines):
        if lines[i].isdigit() and lines[i + 1].isdigit() and lines[i + 2] == "127.0.0.1" and lines[i + 3].isdigit():
            ranges.append((int(lines[i]), int(lines[i + 1]), int(lines[i + 3])))
            i += 4
        else:
            i += 1
    return ranges


def _ok(reply: str) -> None:
    if not reply.strip().startswith(("OK", "NOKEY")):
        raise RuntimeError(f"cluster command refused: {reply.strip()}")
