"""Fixtures for the scale-out tests: a small PostgreSQL behind a real PgBouncer, a Redis
Sentinel set, and many copies of the function pointed at them (loaded by conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from conftest import Database, migrated_postgres
from devserver.copies import FunctionCopy
from devserver.copies import start_together
from devserver.pgbouncer import INSTALL_HINT, PgBouncerServer, pgbouncer_binary
from devserver.sentinel import SentinelSet
from devserver.servers import PostgresServer, RedisServer

# Copies behind the one PgBouncer; SCALEOUT_COPIES=48 tries more.
POOLED_COPIES = int(os.environ.get("SCALEOUT_COPIES", "24"))
# Far below what the copies would open directly: 24 copies x DATABASE_POOL_SIZE 4 = 96
# client connections share PgBouncer's 8 server connections, and PostgreSQL itself
# accepts 20 (8 for PgBouncer, 3 superuser-reserved, the rest for the tests' audits).
PGBOUNCER_POOL_SIZE = 8
SMALL_MAX_CONNECTIONS = 20
# Starting two dozen copies at once on two shared cores takes a while.
FLEET_START_SECONDS = 180.0


@pytest.fixture(scope="module")
def small_postgres(workdir: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL of its own with a small max_connections, migrated directly."""
    server = migrated_postgres(workdir / "small-postgres", max_connections=SMALL_MAX_CONNECTIONS)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pgbouncer(workdir: Path, small_postgres: PostgresServer) -> Iterator[PgBouncerServer]:
    if pgbouncer_binary() is None:
        pytest.skip(f"pgbouncer is not installed; install it with: {INSTALL_HINT}")
    server = PgBouncerServer(
        workdir / "pgbouncer", small_postgres, default_pool_size=PGBOUNCER_POOL_SIZE,
        max_client_conn=max(200, 2 * POOLED_COPIES * 4),
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pooled_copies(
    pgbouncer: PgBouncerServer, redis_server: RedisServer, base_env: dict[str, str], workdir: Path,
) -> Iterator[list[FunctionCopy]]:
    """POOLED_COPIES copies, all reaching PostgreSQL through PgBouncer only; shared by
    the module's tests (each starts from empty tables, see `pooled_db`)."""
    env = {**base_env, "DATABASE_URL": pgbouncer.url, "DATABASE_POOLING": "transaction"}
    logs = [workdir / f"pooled-copy-{n}.log" for n in range(POOLED_COPIES)]
    copies = start_together(env, logs, timeout_seconds=FLEET_START_SECONDS)
    yield copies
    for copy in copies:
        copy.kill()


@pytest.fixture
def pooled_db(
    small_postgres: PostgresServer, pgbouncer: PgBouncerServer, redis_server: RedisServer,
) -> Iterator[Database]:
    """The small PostgreSQL (read directly, not through PgBouncer), with empty tables
    and an empty Redis before each test, and every server up again after it."""
    servers = (small_postgres, pgbouncer, redis_server)
    for server in servers:
        if not server.running:
            server.start()
    database = Database(small_postgres)
    database.execute("TRUNCATE orders, outbox RESTART IDENTITY")
    redis_server.client().flushall()
    yield database
    for server in servers:
        if not server.running:
            server.start()


@pytest.fixture
def sentinel_set(workdir: Path) -> Iterator[SentinelSet]:
    """A fresh primary, replica and three sentinels per test: tests kill and demote."""
    servers = SentinelSet(workdir / f"sentinel-set-{os.urandom(4).hex()}").start()
    yield servers
    servers.stop()
