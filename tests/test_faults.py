"""Faults users live through: Redis emptied, killed or restarted; PostgreSQL stopped;
a copy that dies holding a claim."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from devserver.waiting import wait_until
from support import Client, Database, assert_problem, claim_held, idempotency_records, metric

pytestmark = pytest.mark.multiprocess


def test_a_replay_after_redis_was_flushed_returns_the_same_order_from_postgresql(
    api: Client, db: Database, redis_server
) -> None:
    first = api.create(key="flushed")
    redis_server.client().flushall()
    before = api.outcome_count("replayed-postgres")

    replay = api.create(key="flushed")

    assert replay.status_code == 201 and replay.content == first.content
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert api.outcome_count("replayed-postgres") == before + 1
    assert db.order_count() == 1
    # ... and the answer is back in Redis for the next replay.
    assert api.create(key="flushed").content == first.content
    assert api.outcome_count("replayed-redis") >= 1


def test_a_changed_body_after_redis_was_flushed_is_still_a_422(api: Client, db: Database, redis_server) -> None:
    api.create({"productQuantity": 1}, key="flushed")
    redis_server.client().flushall()

    assert_problem(api.create({"productQuantity": 5}, key="flushed"), 422)
    assert db.order_count() == 1


def test_with_redis_killed_orders_are_created_and_replayed_and_health_says_degraded(
    api: Client, db: Database, redis_server
) -> None:
    before = api.create(key="before-kill")
    degraded_before = metric(api, "orders_degraded_operations_total")
    redis_server.kill()

    created = api.create(key="during")
    replayed = api.create(key="during")
    old = api.create(key="before-kill")
    health = api.get("/healthz", profile=None)

    assert created.status_code == 201 and replayed.content == created.content
    assert old.content == before.content
    assert health.status_code == 200
    assert health.json() == {"status": "degraded", "postgres": "ok", "redis": "down"}
    # The three order requests above were served on PostgreSQL alone; /healthz is not one.
    assert metric(api, "orders_degraded_operations_total") == degraded_before + 3
    assert db.order_count() == 2

    redis_server.start()
    assert api.get("/healthz", profile=None).json()["status"] == "ok"
    assert api.create(key="during").content == created.content
    assert api.create(key="after").status_code == 201
    assert db.order_count() == 3


def test_the_redis_fast_path_comes_back_by_itself_after_a_restart(
    api: Client, db: Database, redis_server
) -> None:
    redis_server.restart()
    # /healthz asks Redis even while cooling down, and an answer ends the cool-down.
    wait_until(lambda: api.get("/healthz", profile=None).json()["redis"] == "ok", what="Redis back",
               timeout_seconds=30)
    api.create(key="after-restart")
    api.create(key="after-restart")  # maybe still from PostgreSQL if the client reconnected late
    before = api.outcome_count("replayed-redis")

    api.create(key="after-restart")

    assert api.outcome_count("replayed-redis") == before + 1


def test_postgresql_stopped_is_a_503_that_leaves_no_row_and_no_stuck_key(
    api: Client, db: Database, postgres, redis_server
) -> None:
    postgres.stop()

    refused = api.create(key="while-down")
    health = api.get("/healthz", profile=None)

    assert_problem(refused, 503, "retry")
    assert int(refused.headers["Retry-After"]) >= 1
    assert health.status_code == 503 and health.json()["postgres"] == "down"
    assert idempotency_records(redis_server) == []  # the claim was released

    postgres.start()
    retried = api.create(key="while-down")
    replayed = api.create(key="while-down")

    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
    assert replayed.content == retried.content
    assert db.order_count() == 1


def test_after_a_postgresql_restart_the_first_request_does_not_fail_on_a_stale_connection(
    api: Client, db: Database, postgres
) -> None:
    api.create(key="warm-the-pool")
    postgres.restart()

    assert api.create(key="after-restart").status_code == 201
    assert api.get("/orders").status_code == 200


def test_a_restart_with_a_warm_pool_costs_no_503_once_postgresql_accepts_connections(
    start_copies, db: Database, postgres
) -> None:
    name = "warm-pool-restart"
    (copy,) = start_copies(1, DATABASE_POOL_SIZE="6", DATABASE_URL=f"{postgres.url}?application_name={name}")
    client = Client(copy.url)

    # given: creates and lists side by side until the copy holds 4+ PostgreSQL connections.
    warming = threading.Event()

    def traffic() -> None:
        own = Client(copy.url)
        while not warming.is_set():
            own.create()
            own.get("/orders")

    threads = [threading.Thread(target=traffic) for _ in range(12)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: _connections_named(db, name) >= 4, what="4 pooled connections", timeout_seconds=60)
    finally:
        warming.set()
        for thread in threads:
            thread.join()
    assert _connections_named(db, name) >= 4

    # when: PostgreSQL restarts (start() returns once a fresh connection is accepted),
    # then requests come one at a time.
    postgres.restart()
    statuses = [client.create(key=f"after-{n}").status_code if n % 2 == 0 else client.get("/orders").status_code
                for n in range(12)]

    # then: every one is answered from the restarted PostgreSQL: no 503 per stale connection.
    assert statuses == [201, 200] * 6


def _connections_named(db: Database, name: str) -> int:
    return int(db.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n", n=name)[0][0])


def test_a_claim_left_by_a_crashed_copy_blocks_its_key_no_longer_than_the_lease(
    start_copies, db: Database, postgres, redis_server
) -> None:
    lease_seconds = 2
    doomed, survivor = start_copies(
        2, IDEMPOTENCY_LEASE_SECONDS=str(lease_seconds), IDEMPOTENCY_WAIT_SECONDS="0.3",
        DATABASE_STATEMENT_TIMEOUT_SECONDS="30",
    )
    client = Client(survivor.url)
    client.create(key="warm-up")  # both copies have met PostgreSQL and Redis
    Client(doomed.url).create(key="warm-up")

    # given: the doomed copy claims the key, then hangs on PostgreSQL and is killed.
    postgres.pause()
    hung = threading.Thread(
        target=lambda: _ignore_errors(lambda: Client(doomed.url).create(key="orphan", timeout=10))
    )
    hung.start()
    wait_until(lambda: claim_held(redis_server, "alice", "orphan"), what="the doomed copy's claim", timeout_seconds=30)
    doomed.kill()
    killed_at = time.monotonic()
    postgres.resume()
    hung.join()

    # when: a client retries on the surviving copy until it is answered.
    answers = [client.create(key="orphan")]

    def answered() -> bool:
        if answers[-1].status_code != 409:
            return True
        assert answers[-1].headers["Retry-After"]
        answers.append(client.create(key="orphan"))
        return answers[-1].status_code != 409

    wait_until(answered, what="the orphaned key to be answered", timeout_seconds=30, poll_seconds=0.1)
    first, answer = answers[0], answers[-1]
    unblocked_after = time.monotonic() - killed_at

    # then: blocked (or, if the dead copy's INSERT had reached PostgreSQL, answered with
    # that order), and never for longer than the lease; one order.
    assert first.status_code in (409, 201)
    assert answer.status_code == 201
    assert unblocked_after < lease_seconds + 1.0
    assert db.execute("SELECT count(*) FROM orders WHERE idempotency_key = 'orphan'") == [[1]]


def _ignore_errors(work) -> None:
    try:
        work()
    except requests.RequestException:
        pass
