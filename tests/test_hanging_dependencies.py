"""Dependencies that hang instead of dying (SIGSTOP: sockets open, no answer), met by the
real app in this process (tests/inprocess.py), and a copy killed with SIGKILL in the
middle of a busy minute."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import pytest
import requests

from devserver.copies import FunctionCopy
from devserver.servers import PostgresServer, RedisServer
from devserver.waiting import wait_until
from loadgen.audit import audit
from loadgen.keyed import KeyedLoad
from support import Client, Database, metric

REDIS_TIMEOUT_SECONDS = 0.3  # REDIS_TIMEOUT_SECONDS in the fixtures' base_env
POSTGRES_TIMEOUT_SECONDS = 2.0  # DATABASE_CONNECT_/STATEMENT_TIMEOUT_SECONDS there
# A hung PostgreSQL is noticed by the socket a second after its statement timeout would
# have fired (function/database.py); the rest is slack for two busy shared cores.
POSTGRES_HANG_NOTICED_SECONDS = POSTGRES_TIMEOUT_SECONDS + 1.0 + 1.5
COOL_DOWN_SECONDS = 1.0  # function/claims.py: Redis is skipped this long after a failure


def wait_for_redis_in_use(client: Client) -> None:
    """Until the copy uses Redis again: /healthz asks Redis even while a failure's
    cool-down runs, and an answer ends the cool-down."""
    wait_until(lambda: client.get("/healthz", profile=None).json()["redis"] == "ok", what="Redis in use",
               timeout_seconds=30)


def degraded_count(client: Client) -> float:
    return metric(client, "orders_degraded_operations_total")


def timed(request) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = request()
    return response, time.monotonic() - started


def test_with_redis_hanging_orders_are_made_and_replayed_from_postgresql_within_the_redis_timeout(
    app: Client, db: Database, redis_server: RedisServer
) -> None:
    before_pause = app.create(key="before-pause")
    wait_for_redis_in_use(app)  # no cool-down left from an earlier test: Redis is asked
    degraded_before = degraded_count(app)
    redis_server.pause()
    try:
        answers = [timed(lambda: app.create(key="during-pause")) for _ in range(3)]
        answers += [timed(lambda: app.create(key="before-pause"))]
        health, health_seconds = timed(lambda: app.get("/healthz", profile=None))
    finally:
        redis_server.resume()

    created = answers[0][0]
    assert [response.status_code for response, _ in answers] == [201, 201, 201, 201]
    assert all(response.content == created.content for response, _ in answers[1:3])
    assert answers[3][0].content == before_pause.content
    # At most one Redis timeout per request (fewer during the cool-down), then PostgreSQL.
    assert max(seconds for _, seconds in answers) < REDIS_TIMEOUT_SECONDS + 1.0, answers
    assert degraded_count(app) == degraded_before + 4
    assert health.json() == {"status": "degraded", "postgres": "ok", "redis": "down"}
    assert health_seconds < REDIS_TIMEOUT_SECONDS + 1.0
    assert db.order_count() == 2


def test_after_redis_resumes_the_fast_path_comes_back_by_itself(
    app: Client, db: Database, redis_server: RedisServer
) -> None:
    wait_for_redis_in_use(app)
    redis_server.pause()
    try:
        assert app.create(key="while-hung").status_code == 201
    finally:
        redis_server.resume()
    resumed_at = time.monotonic()
    before = app.outcome_count("replayed-redis")

    # A new key, created and replayed until Redis serves the replay again.
    created = app.create(key="after-resume")

    def replayed_from_redis() -> bool:
        assert app.create(key="after-resume").content == created.content
        return app.outcome_count("replayed-redis") > before

    wait_until(replayed_from_redis, what="a replay from Redis", timeout_seconds=10, poll_seconds=0.1)
    assert time.monotonic() - resumed_at < COOL_DOWN_SECONDS + 2.0


def test_a_key_made_while_redis_hung_is_not_blocked_by_the_claim_redis_runs_when_it_resumes(
    app: Client, db: Database, redis_server: RedisServer
) -> None:
    wait_for_redis_in_use(app)
    redis_server.pause()
    try:
        made_while_hung = app.create(key="while-hung")
    finally:
        redis_server.resume()
    # The claim sent to the hung Redis sat in its socket; resumed, Redis runs it, and an
    # in-flight record now names a request that finished long ago on PostgreSQL alone.
    wait_for_redis_in_use(app)

    replay, seconds = timed(lambda: app.create(key="while-hung"))

    assert replay.status_code == 201, replay.text
    assert replay.content == made_while_hung.content
    assert seconds < 1.0  # not after waiting IDEMPOTENCY_WAIT_SECONDS for a dead claim
    assert db.order_count() == 1


def test_with_postgresql_hanging_requests_get_a_503_in_bounded_time_and_the_pool_recovers(
    app: Client, db: Database, postgres: PostgresServer
) -> None:
    with ThreadPoolExecutor(4) as pool:  # every pooled connection of the copy is in use
        list(pool.map(lambda n: app.create(key=f"warm-{n}"), range(4)))
    postgres.pause()
    try:
        with ThreadPoolExecutor(4) as pool:
            hung = list(pool.map(lambda n: timed(lambda: app.create(key=f"hung-{n}")), range(4)))
        health, health_seconds = timed(lambda: app.get("/healthz", profile=None))
    finally:
        postgres.resume()

    for response, seconds in hung:
        assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
        assert seconds < POSTGRES_HANG_NOTICED_SECONDS
    assert health.status_code == 503 and health_seconds < POSTGRES_HANG_NOTICED_SECONDS

    # The connections that timed out were thrown away, not lent again: no 503 from here on.
    # A hung key may be in flight a moment longer (its INSERT, sent before the pause,
    # finishes after it): a 409, as for any key in flight, asked again as a client would.
    after = [created_once_settled(app, f"hung-{n}") for n in range(4)]
    after += [app.get("/orders") for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        after += list(pool.map(lambda n: app.create(key=f"after-{n}"), range(8)))
    assert [response.status_code for response in after] == [201] * 4 + [200] * 4 + [201] * 8
    assert db.order_count() == 4 + 4 + 8


def created_once_settled(client: Client, key: str) -> requests.Response:
    """A create sent again while its key is in flight (409), as a client retries; the
    first other answer."""
    answers: list[requests.Response] = []

    def settled() -> bool:
        answers.append(client.create(key=key))
        return answers[-1].status_code != 409

    wait_until(settled, what=f"{key} no longer in flight", timeout_seconds=30, poll_seconds=0.1)
    return answers[-1]


@pytest.mark.multiprocess
def test_a_copy_killed_under_load_leaves_one_order_per_key_and_every_acknowledged_order_stored(
    start_copies: Callable[..., list[FunctionCopy]], db: Database, postgres: PostgresServer
) -> None:
    lease_seconds = 2
    doomed, survivor = start_copies(2, IDEMPOTENCY_LEASE_SECONDS=str(lease_seconds))
    load = KeyedLoad([doomed.url, survivor.url], clients=6, keys_per_client=60)

    load.start()
    load.wait_until_acknowledged(100)
    # A short hang of PostgreSQL holds requests in flight (half the clients live on the
    # doomed copy), so the kill surely cuts some after their claim, around their INSERT.
    postgres.pause()
    doomed_client = Client(doomed.url)
    wait_until(lambda: metric(doomed_client, "orders_db_pool_connections_in_use") >= 1,
               what="a request of the doomed copy held on PostgreSQL", timeout_seconds=30)
    killed_at = time.monotonic()
    doomed.kill()
    postgres.resume()
    load.join()

    assert load.failures == [] and load.unanswered == [], (load.failures, load.unanswered)
    cut_at_the_kill = {key for key, sent_at in load.cut if sent_at < killed_at}
    assert cut_at_the_kill, "no request was in flight at the kill"
    connection = postgres.connect()
    try:
        audited = audit(connection, profile_pattern="load", acknowledged=load.acknowledged_orders())
    finally:
        connection.close()
    assert audited.problems() == []  # one order per key, every 201 in PostgreSQL
    assert audited.unacknowledged == set()  # and nothing else is
    # Keys whose claim died with the copy were answered once its lease ran out, not later.
    assert max(load.answered_at[key] for key in cut_at_the_kill) - killed_at < lease_seconds + 3.0
