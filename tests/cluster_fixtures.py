"""Fixtures for the Redis Cluster tests: six real redis-server processes in cluster mode
(three primaries, a replica each), shared by a module and healed between its tests
(loaded by conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from devserver.cluster import INSTALL_HINT, RedisCluster, redis_cli_binary


@pytest.fixture(scope="module")
def redis_cluster_servers(workdir: Path) -> Iterator[RedisCluster]:
    if redis_cli_binary() is None:
        pytest.skip(f"redis-cli is not installed (it creates the cluster); install it with: {INSTALL_HINT}")
    cluster = RedisCluster(workdir / f"redis-cluster-{os.urandom(4).hex()}").start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_cluster(redis_cluster_servers: RedisCluster) -> Iterator[RedisCluster]:
    """Every node running, the cluster ok and empty before each test: tests kill
    primaries (which come back as replicas), move slots and stop the whole cluster."""
    cluster = redis_cluster_servers
    cluster.start_all()
    cluster.flush()
    yield cluster
    cluster.start_all()
