"""Redis Cluster (`redis+cluster://`): the client built from seed nodes, and what its
failures are.

redis-py's asyncio `RedisCluster` asks a seed for the slot map, routes each script call
by its one key (every record is one key, so one slot; no hash tag, so records spread
over every primary), follows MOVED and ASK redirections as slots move, and re-reads the
map after a connection to a node fails (a primary killed, its replica promoted).
"""

from __future__ import annotations

from typing import Any

import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster

from .outcomes import RedisFailure
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
    tls: dict[str, Any] = {}
    if seeds.tls:
        tls = {"ssl": True, "ssl_ca_certs": seeds.ssl_ca_certs, "ssl_cert_reqs": seeds.ssl_cert_reqs}
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in seeds.addresses],
        username=seeds.username, password=seeds.password, **tls, **options,
    )


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
