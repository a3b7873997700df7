"""A PostgreSQL that cannot write for a while (a failover demoted the primary, a full disk,
an operator's default_transaction_read_only): a create is a 503 with Retry-After that
leaves nothing behind, reads go on, and writes resume by themselves; directly and through
a transaction-mode PgBouncer."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import pytest
import requests

from devserver.servers import PostgresServer
from devserver.waiting import wait_until
from devserver.sink import EventSink
from support import Client, Database, assert_problem, idempotency_records

pytestmark = pytest.mark.multiprocess


@contextlib.contextmanager
def read_only(postgres: PostgresServer) -> Iterator[None]:
    """Every new transaction read-only, as after `ALTER SYSTEM` and a reload; undone
    whatever happens inside."""
    _set_read_only(postgres, True)
    try:
        yield
    finally:
        _set_read_only(postgres, False)


def _set_read_only(postgres: PostgresServer, on: bool) -> None:
    admin = postgres.connect()
    try:
        if on:
            admin.run("ALTER SYSTEM SET default_transaction_read_only = on")
        else:
            admin.run("ALTER SYSTEM RESET default_transaction_read_only")
        admin.run("SELECT pg_reload_conf()")
    finally:
        admin.close()
    wanted = "on" if on else "off"
    wait_until(lambda: _new_sessions_read_only(postgres) == wanted, what="the reload", timeout_seconds=30)


def _new_sessions_read_only(postgres: PostgresServer) -> str:
    """What a session started now gets: the postmaster has read the new file."""
    admin = postgres.connect()
    try:
        return str(admin.run("SHOW default_transaction_read_only")[0][0])
    finally:
        admin.close()


def creates_until_one_is_refused(client: Client, most: int = 20) -> list[requests.Response]:
    """The creates answered 201 before the first 503. A backend applies a reload between
    commands, so a pooled connection idle since before it may take one more write with
    the old setting (PostgreSQL's behaviour, and a real order); the first refusal retires
    every connection of its generation, so from then on each write meets the new one."""
    landed: list[requests.Response] = []
    for n in range(most):
        answer = client.create(key=f"landed-{n}")
        if answer.status_code == 503:
            return landed
        assert answer.status_code == 201, answer.text
        landed.append(answer)
    raise AssertionError(f"{most} creates after the reload, none refused")


def assert_writes_refused_and_resumed(
    client: Client, database: Database, redis_server, postgres, backends: Callable[[], set[int]] = set,
) -> None:
    before = client.create(key="before")
    assert before.status_code == 201
    serving_before = backends()

    with read_only(postgres):
        landed = creates_until_one_is_refused(client)
        refused = [client.create(key=f"while-read-only-{n}") for n in range(3)]
        # The connections that met the read-only server are given up, with their generation:
        # a new one is what could reach a new primary after a failover.
        assert serving_before & backends() == set()
        listed = client.get("/orders")
        fetched = client.get(before.headers["Location"])
        replayed = client.create(key="before")
        claims_left = [key for key in idempotency_records(redis_server)]

    for answer in refused:  # never a 500: PostgreSQL cannot take the order now
        assert_problem(answer, 503, "cannot take writes", "retry")
        assert int(answer.headers["Retry-After"]) >= 1
    made_before = {before.json()["orderId"]} | {answer.json()["orderId"] for answer in landed}
    assert listed.status_code == 200 and {o["orderId"] for o in listed.json()["orders"]} == made_before
    assert fetched.status_code == 200
    assert replayed.status_code == 201 and replayed.content == before.content
    # The finished keys' records only: every refused claim was released.
    assert len(claims_left) == 1 + len(landed)
    assert database.order_count() == 1 + len(landed)  # nothing half written

    # Writes resume by themselves, without a restart of anything; the same key makes its order.
    retried = client.create(key="while-read-only-0")
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
    assert client.create(key="after").status_code == 201
    assert database.order_count() == 3 + len(landed)


def test_a_read_only_postgresql_is_a_503_that_leaves_nothing_and_writes_resume_by_themselves(
    start_copies, db: Database, postgres, redis_server,
) -> None:
    name = "read-only-copy"
    (copy,) = start_copies(1, DATABASE_URL=f"{postgres.url}?application_name={name}")

    def backends() -> set[int]:
        return {row[0] for row in db.execute("SELECT pid FROM pg_stat_activity WHERE application_name = :n", n=name)}

    assert_writes_refused_and_resumed(Client(copy.url), db, redis_server, postgres, backends)


def test_a_read_only_postgresql_behind_a_transaction_mode_pgbouncer_is_a_503_too(
    start_copies, pgbouncer, pooled_db: Database, small_postgres, redis_server,
) -> None:
    (copy,) = start_copies(1, DATABASE_URL=pgbouncer.url, DATABASE_POOLING="transaction")

    assert_writes_refused_and_resumed(Client(copy.url), pooled_db, redis_server, small_postgres)


def test_with_order_events_a_read_only_postgresql_is_a_503_and_every_order_made_is_published(
    start_copies, db: Database, postgres, redis_server, workdir,
) -> None:
    sink = EventSink(workdir / "read-only-sink").start()
    try:
        (copy,) = start_copies(1, K_SINK=sink.url, OUTBOX_RETRY_SECONDS="0.5")
        assert_writes_refused_and_resumed(Client(copy.url), db, redis_server, postgres)

        made = {row[0] for row in db.execute("SELECT CAST(order_id AS text) FROM orders")}
        sink.wait_for(made, timeout_seconds=30)
        assert sink.event_ids() == made  # no event for an order that was refused
    finally:
        sink.stop()
