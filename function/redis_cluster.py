"""Redis Cluster (`redis+cluster://`): the client built from seed nodes, and what its
failures are.

redis-py's asyncio `RedisCluster` asks a seed for the slot map, routes each script call
by its one key (every record is one key, so one slot; no hash tag, so records spread
over every primary), follows MOVED and ASK redirections as slots move, and re-reads the
map after a connection to a node fails (a primary killed, its replica promoted).
"""

from __future__ import annotations

import logging
from typing import Any

import redis.exceptions
from redis._parsers.commands import AsyncCommandsParser
from redis.asyncio.cluster import ClusterNode, Connection, RedisCluster

from .labels import RedisFailure
from .targets import ClusterSeeds

# Not a RedisError: redis-py raises it when no seed answers or the slot map has holes.
NOT_REDIS_ERRORS = (redis.exceptions.RedisClusterException,)
# The cluster cannot serve the key's slot now: CLUSTERDOWN (a primary failed and no
# replica promoted yet, or a majority lost), a slot no node serves, redirections that
# did not settle within redis-py's 16 tries (a slot moving back and forth, TRYAGAIN).
_CLUSTER_TROUBLE = (
    redis.exceptions.ClusterError, redis.exceptions.RedisClusterException, redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
)


def cluster_client(seeds: ClusterSeeds, options: dict[str, Any]) -> RedisCluster:
    """`options` are the single-node client's (timeouts, retry, health checks): the
    same rules hold per node. `retry` becomes the cluster's: after a failed connection
    redis-py re-reads the slot map and tries once more, on the node it now names."""
    _ask_on_the_connection_that_sent_asking()
    _unclosed_node_is_a_warning()
    tls: dict[str, Any] = {}
    if seeds.tls:
        tls = {"ssl": True, "ssl_ca_certs": seeds.ssl_ca_certs, "ssl_cert_reqs": seeds.ssl_cert_reqs}
    return _Cluster(
        startup_nodes=[ClusterNode(host, port) for host, port in seeds.addresses],
        username=seeds.username, password=seeds.password, **tls, **options,
        # A MOVED answer updates that slot's owner and nothing else. By default every
        # fifth MOVED closes every connection to every node and re-reads the whole map,
        # failing the calls in flight on healthy nodes: while a slot moves, each copy
        # then fails a few calls per move (tests/test_cluster.py saw 6 of ~300).
        reinitialize_steps=0,
    )


class _Cluster(RedisCluster):
    """The cluster client, with what redis-py 7.1 does otherwise (below)."""

    # Retried once (on a slot map read again): a connection that failed. Not CLUSTERDOWN:
    # redis-py waits 0.25 s before each try, so a retry alone outlasts the default 0.5 s
    # REDIS_TIMEOUT_SECONDS and a cluster that is down showed as a timeout, every call
    # taking the whole timeout; now it fails as `cluster` after one wait.
    ERRORS_ALLOW_RETRY = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)  # type: ignore[assignment]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands_parser = _CommandTable(self)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """redis-py 7.1 picks a command's node before it reads the slot map, when the
        map is not read yet (the first call, and the first after a failed node made it
        drop the map): with no map a keyed command such as EVALSHA goes to a random
        node, a replica or the wrong primary, and a script loaded then lands on the
        nodes that random node knew of. Measured here: a third of the first 50 calls
        failed with NOSCRIPT, for good. Reading the map first routes every call by its
        key."""
        if self._initialize:
            await self.initialize()
        return await super().execute_command(*args, **kwargs)


class _CommandTable(AsyncCommandsParser):
    """Each time redis-py reads the slot map it also asks the first primary for the
    command table, and fails the whole reading if that one primary does not answer: a
    primary killed and not yet replaced then failed the calls of every slot, not only
    its own (measured here: keys on the primaries still up failed with its "connection
    refused"). Any node's table is the same, so the next one is asked instead."""

    def __init__(self, cluster: RedisCluster) -> None:
        super().__init__()
        self._cluster = cluster

    async def initialize(self, node: ClusterNode | None = None) -> None:
        others = [n for n in self._cluster.nodes_manager.nodes_cache.values() if n is not node]
        failure: BaseException | None = None
        for candidate in [node, *others] if node else others:
            try:
                return await super().initialize(candidate)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
                failure = exc
        if failure is not None:
            raise failure
        return await super().initialize(node)


def _unclosed_node_is_a_warning() -> None:
    """When redis-py re-reads the slot map (a node stopped answering) it replaces every
    node object; a call in flight on an old one reconnects it, and the old object, once
    collected, reports "Unclosed ClusterNode object" through the event loop's exception
    handler, which logs it as an error. Nothing failed and nothing is to be done (its
    socket closes with it): a warning, so an error line still means a failed request."""
    asyncio_logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _UnclosedNodeWarning) for f in asyncio_logger.filters):
        asyncio_logger.addFilter(_UnclosedNodeWarning())


class _UnclosedNodeWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING and str(record.msg).startswith(ClusterNode._DEL_MESSAGE):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _ask_on_the_connection_that_sent_asking() -> None:
    """redis-py 7.1's asyncio cluster follows an ASK redirection by sending ASKING and
    then the command, each on a connection taken from the node's free list, which it
    takes from the front and gives back at the end: with several connections free the
    command goes out on another connection than ASKING, the importing node answers it
    MOVED (back to the source, which ASKs again) and after 16 rounds the call fails with
    "TTL exhausted". Measured here: 1-116 failed calls per slot moved under 16 callers,
    none with this. Taking the most recently freed connection (as redis-py's plain
    connection pool does) sends the command on ASKING's connection, since nothing runs
    between the two. Installed when the first cluster client is built; it changes
    redis-py's ClusterNode for the whole process, where nothing else uses it."""
    if getattr(ClusterNode.acquire_connection, "_last_freed_first", False):
        return
    take_new = ClusterNode.acquire_connection

    def acquire_connection(self: ClusterNode) -> Connection:
        if self._free:
            return self._free.pop()
        return take_new(self)  # none free: redis-py's own path opens one (or refuses)

    acquire_connection._last_freed_first = True  # type: ignore[attr-defined]
    ClusterNode.acquire_connection = acquire_connection  # type: ignore[method-assign]


def failure_kind(exc: BaseException) -> RedisFailure | None:
    """RedisFailure.CLUSTER for the cluster's own trouble, CONNECTION when no node could
    be reached at all; None for what the single-node rules already name."""
    if isinstance(exc, redis.exceptions.RedisClusterException) and isinstance(
        exc.__cause__, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
    ):
        return RedisFailure.CONNECTION  # "cannot be connected": every seed refused or timed out
    if isinstance(exc, _CLUSTER_TROUBLE):
        return RedisFailure.CLUSTER
    return None
