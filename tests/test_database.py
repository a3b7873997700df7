"""The pool's errors are the store's own: whatever pg8000 raises leaves database.py as
DatabaseUnavailable (a retry may work: 503) or DatabaseFailed (it will not). A break
retires every connection of its time; TCP keepalive finds a silent peer; the migration's
connection waits out its own bound, not the connect timeout."""

from __future__ import annotations

import asyncio
import threading

import pg8000.native
import psutil
import pytest

from devserver.waiting import wait_until

from function.database import Database, DatabaseFailed, DatabaseUnavailable
from function.migrate import ADVISORY_LOCK_ID, apply_migrations
from function.targets import Keepalive, connect_kwargs, parse_database_url

pytestmark = pytest.mark.anyio  # the pool is the function's own async door to pg8000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pool_on(url: str) -> Database:
    return Database(parse_database_url(url), pool_size=1, transaction_pooling=False,
                    connect_timeout_seconds=2, statement_timeout_seconds=2)


async def test_a_statement_postgresql_refuses_is_the_stores_error_with_its_sqlstate_and_the_pool_goes_on(
    postgres,
) -> None:
    database = pool_on(postgres.url)

    with pytest.raises(DatabaseFailed) as refused:
        await database.run(lambda session: session.run("SELEC 1"))  # a bug, not an outage

    assert refused.value.sqlstate == "42601"
    assert "SELEC" not in str(refused.value)  # the SQLSTATE, never the statement
    assert await database.run(lambda session: session.run("SELECT 1")) == [[1]]


async def test_a_postgresql_that_is_not_there_is_unavailable(postgres) -> None:
    nowhere = postgres.url.replace(f":{postgres.port}/", ":1/")

    with pytest.raises(DatabaseUnavailable):
        await pool_on(nowhere).run(lambda session: session.run("SELECT 1"))


def connections_named(postgres, name: str) -> int:
    connection = postgres.connect()
    try:
        return int(connection.run(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name", name=name)[0][0])
    finally:
        connection.close()


def named_pool(postgres, name: str, pool_size: int) -> Database:
    """A pool whose connections pg_stat_activity shows under `name`."""
    return Database(parse_database_url(postgres.url + f"?application_name={name}"), pool_size=pool_size,
                    transaction_pooling=False, connect_timeout_seconds=2, statement_timeout_seconds=2)


async def warm(database: Database, connections: int) -> None:
    """`connections` pooled connections, each having served a statement."""
    await asyncio.gather(*(database.run(lambda session: session.run("SELECT pg_sleep(0.2)"))
                           for _ in range(connections)))


async def test_after_a_restart_no_work_fails_on_any_of_the_connections_that_lived_through_it(
    postgres,
) -> None:
    name = "pool-restart-test"
    database = named_pool(postgres, name, pool_size=6)
    await warm(database, 5)
    assert connections_named(postgres, name) == 5

    postgres.restart()
    answers = [await database.run(lambda session: session.run("SELECT 1")) for _ in range(8)]

    assert answers == [[[1]]] * 8  # not one DatabaseUnavailable: the first break retired all five
    assert database.epoch == 1
    assert connections_named(postgres, name) == 1  # one new connection served all eight


async def test_a_connection_the_server_ended_is_tried_again_on_a_new_one_and_its_peers_retired(
    postgres,
) -> None:
    name = "pool-terminate-test"
    database = named_pool(postgres, name, pool_size=4)
    await warm(database, 3)
    admin = postgres.connect()
    try:  # an operator's (or a failover manager's) pg_terminate_backend: FATAL 57P01 on next use
        admin.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :n", n=name)
    finally:
        admin.close()

    assert await database.run(lambda session: session.run("SELECT 1")) == [[1]]
    assert await database.run(lambda session: session.run("SELECT 2")) == [[2]]
    assert database.epoch == 1


def established_to(port: int) -> int:
    """This process's established TCP connections to `port`."""
    return sum(1 for connection in psutil.Process().net_connections(kind="tcp")
               if connection.raddr and connection.raddr.port == port and connection.status == psutil.CONN_ESTABLISHED)


async def test_tcp_keepalive_finds_idle_connections_whose_peer_went_silent_and_the_pool_replaces_them(
    postgres, network_faults,
) -> None:
    quick = Database(parse_database_url(postgres.url), pool_size=3, transaction_pooling=False,
                     connect_timeout_seconds=2, statement_timeout_seconds=2, keepalive=Keepalive(1, 1, 2))
    await warm(quick, 3)
    before = established_to(postgres.port)

    # The peer vanishes without a reset (a failover moved the address): the kernel's
    # probes go unanswered and it gives the idle connections up, before any request.
    with network_faults.black_holed(postgres.port):
        wait_until(lambda: established_to(postgres.port) <= before - 3, what="the kernel to give up 3 connections",
                   timeout_seconds=30, poll_seconds=0.1)

    assert await quick.run(lambda session: session.run("SELECT 1")) == [[1]]  # a new connection serves
    assert quick.epoch == 1


def test_a_migration_waits_for_another_copys_lock_longer_than_its_connect_timeout(postgres) -> None:
    holder = postgres.connect()
    holder.run("BEGIN")
    holder.run("SELECT pg_advisory_xact_lock(:lock)", lock=ADVISORY_LOCK_ID)
    release = threading.Timer(2.0, lambda: (holder.run("COMMIT"), holder.close()))
    release.start()
    # The connect timeout (0.5 s) stays pg8000's socket timeout afterwards: a migration
    # reading on it would die half-way through its lock wait.
    connection = pg8000.native.Connection(**connect_kwargs(parse_database_url(postgres.url), 0.5))
    try:
        assert apply_migrations(connection, timeout_seconds=30) == []  # waited, then found it up to date
        assert connection.run("SELECT 1") == [[1]]
    finally:
        release.join()
        connection.close()
