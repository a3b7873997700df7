"""Two dozen copies through one transaction-mode PgBouncer whose pool is far smaller than
the copies' pools together (8 server connections for 24 x 4 client ones, PostgreSQL
max_connections 20): exactly one order per key, no connection errors, and a PostgreSQL
restart behind PgBouncer loses no acknowledged order."""

from __future__ import annotations

import pytest

from support import Database
from devserver.copies import FunctionCopy
from devserver.pgbouncer import PgBouncerServer
from devserver.servers import PostgresServer
from scaleout import (
    KeyedLoad,
    acknowledged,
    assert_acknowledged_orders_stored_once,
    assert_one_order_per_key,
    server_errors,
    storm,
)
from scaleout_fixtures import PGBOUNCER_POOL_SIZE

pytestmark = pytest.mark.multiprocess

DUPLICATES = 8


def urls(copies: list[FunctionCopy]) -> list[str]:
    return [copy.url for copy in copies]


def test_a_duplicate_storm_over_every_copy_through_pgbouncer_makes_one_order_per_key(
    pooled_copies: list[FunctionCopy], pooled_db: Database,
) -> None:
    # Duplicate d of the k-th key of a wave goes to copy k + d: this many keys per wave
    # reach every copy.
    keys_at_once = len(pooled_copies) - DUPLICATES + 1
    result = storm(urls(pooled_copies), keys=6 * keys_at_once, duplicates=DUPLICATES, keys_at_once=keys_at_once)

    assert result.errors == []
    assert server_errors(result) == []
    assert set(result.statuses()) <= {201, 409}  # 409: a duplicate outwaited its original
    assert len(result.served_by()) == len(pooled_copies)
    assert_one_order_per_key(result, pooled_db)
    assert_acknowledged_orders_stored_once(acknowledged(result), pooled_db, "storm")


def test_a_create_load_far_above_the_server_pool_makes_one_order_per_key_without_errors(
    pooled_copies: list[FunctionCopy], pooled_db: Database, pgbouncer: PgBouncerServer,
) -> None:
    # Four creates at once per copy, each needing a server connection of the eight.
    result = storm(urls(pooled_copies), keys=480, duplicates=1, keys_at_once=4 * len(pooled_copies))

    assert result.errors == []
    assert server_errors(result) == []
    assert result.statuses() == {201: 480}
    assert_one_order_per_key(result, pooled_db)
    assert_acknowledged_orders_stored_once(acknowledged(result), pooled_db, "storm")
    # The copies really went through PgBouncer, many clients over few servers.
    (pool,) = [p for p in pgbouncer.pools() if p["database"] == "postgres"]
    servers = sum(int(pool[column]) for column in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"))
    assert servers <= PGBOUNCER_POOL_SIZE < int(pool["cl_active"]) + int(pool["cl_waiting"])


def test_postgresql_restarted_behind_pgbouncer_mid_load_loses_no_acknowledged_order_and_duplicates_none(
    pooled_copies: list[FunctionCopy], pooled_db: Database, small_postgres: PostgresServer,
) -> None:
    load = KeyedLoad(urls(pooled_copies), clients=2 * len(pooled_copies), keys_per_client=10)

    threads = load.start()
    load.wait_until_acknowledged(100)
    acknowledged_before_restart = len(load.acknowledged)
    small_postgres.restart()
    for thread in threads:
        thread.join()

    assert acknowledged_before_restart < 20 * len(pooled_copies), "the load ended before the restart"
    # Clients retry 409 and 503 (PostgreSQL away) until a 201; anything else fails them.
    assert load.failures == [] and load.unanswered == [], (load.failures, load.unanswered)
    assert_acknowledged_orders_stored_once(load.acknowledged, pooled_db, "load")
    assert pooled_db.order_count("load") == len(load.acknowledged) == 20 * len(pooled_copies)

