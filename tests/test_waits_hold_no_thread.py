"""On the ASGI stack a waiting request is a coroutine, not a thread: duplicates waiting
for their original, and creates waiting for PostgreSQL, leave the copy free to serve."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import psutil
import pytest
import requests

from devserver.copies import FunctionCopy
from devserver.servers import PostgresServer, RedisServer
from devserver.waiting import wait_until
from support import Client, Database, claim_held, metric

pytestmark = pytest.mark.multiprocess

POOL_SIZE = 2  # PostgreSQL connections, and so pg8000 threads, of the copy under test


def pool_users(client: Client) -> float:
    """Requests holding or queued for one of the copy's PostgreSQL connections."""
    return metric(client, "orders_db_pool_connections_in_use") + metric(client, "orders_db_pool_waiting_requests")


def creates_in_batches(client: Client) -> float:
    """Creates taken into an INSERT so far (group commit: one connection may carry several)."""
    return metric(client, "orders_insert_batch_creates_sum")


def creates_at_postgres(client: Client) -> float:
    """Creates queued for a connection, plus every create ever taken into a batch: with
    PostgreSQL hung, the rise since a moment is the creates stuck there since then."""
    return metric(client, "orders_db_pool_waiting_requests") + creates_in_batches(client)


def worker_threads(copy: FunctionCopy) -> int:
    """Threads of the copy's gunicorn worker (its only child process)."""
    assert copy.process is not None
    (worker,) = psutil.Process(copy.process.pid).children()
    return worker.num_threads()


def test_sixty_four_duplicates_wait_for_their_original_without_a_thread_each(
    start_copies: Callable[..., list[FunctionCopy]], db: Database, postgres: PostgresServer, redis_server: RedisServer
) -> None:
    # Long pool waits: every duplicate's stale-claim check queues for a connection.
    (copy,) = start_copies(1, DATABASE_POOL_SIZE=str(POOL_SIZE), IDEMPOTENCY_WAIT_SECONDS="20",
                           DATABASE_STATEMENT_TIMEOUT_SECONDS="20", DATABASE_CONNECT_TIMEOUT_SECONDS="20")
    client = Client(copy.url)
    client.create(key="warm-up")
    threads_before = worker_threads(copy)

    postgres.pause()  # the original claims its key, then waits on PostgreSQL
    try:
        with ThreadPoolExecutor(65) as senders:
            original = senders.submit(client.create, key="storm")
            wait_until(lambda: claim_held(redis_server, "alice", "storm"), what="the original's claim",
                       timeout_seconds=30)
            duplicates = [senders.submit(Client(copy.url).create, key="storm") for _ in range(64)]
            # Every duplicate is in and waiting: past 100 ms each asks PostgreSQL once
            # (the stale-claim check), so the original and all 64 hold or queue for the pool.
            wait_until(lambda: pool_users(client) >= 65, what="65 requests at the pool", timeout_seconds=60)
            threads_while_waiting = worker_threads(copy)
            postgres.resume()
            answers = [original.result(), *(d.result() for d in duplicates)]
    finally:
        postgres.resume()

    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["orderId"] for a in answers}) == 1
    assert db.order_count() == 2  # warm-up and storm
    # 65 requests in flight, and no more threads than the PostgreSQL pool's.
    assert threads_while_waiting <= max(threads_before, 1 + POOL_SIZE)
    # Each duplicate waited: for the answer in Redis, or (PostgreSQL being hung past the
    # stale-claim check) for the order PostgreSQL held; none was refused or made twice.
    assert client.outcome_count("waited") + client.outcome_count("replayed-postgres") == 64


def test_with_postgresql_hung_replays_are_still_served_from_redis(
    start_copies: Callable[..., list[FunctionCopy]], db: Database, postgres: PostgresServer
) -> None:
    (copy,) = start_copies(1, DATABASE_POOL_SIZE=str(POOL_SIZE), DATABASE_STATEMENT_TIMEOUT_SECONDS="30",
                           DATABASE_CONNECT_TIMEOUT_SECONDS="30")
    client = Client(copy.url)
    finished = client.create(key="finished")
    stuck: list[requests.Response] = []
    batched_before = creates_in_batches(client)

    postgres.pause()
    try:
        # More new-key creates than the pool has connections: all of them wait on PostgreSQL.
        creators = [threading.Thread(target=lambda: stuck.append(Client(copy.url).create(timeout=60)))
                    for _ in range(2 * POOL_SIZE + 2)]
        for creator in creators:
            creator.start()
        wait_until(lambda: creates_at_postgres(client) - batched_before >= len(creators),
                   what="every create at PostgreSQL", timeout_seconds=30)
        # Replays need only Redis: answered while PostgreSQL is still hung (the client
        # timeout is far below PostgreSQL's 30 s statement timeout).
        replays = [Client(copy.url).create(key="finished", timeout=5) for _ in range(20)]
    finally:
        postgres.resume()
    for creator in creators:
        creator.join(timeout=60)

    assert all(r.status_code == 201 and r.content == finished.content for r in replays)
    assert all(r.headers["Idempotent-Replayed"] == "true" for r in replays)
    assert [r.status_code for r in stuck] == [201] * len(creators)
