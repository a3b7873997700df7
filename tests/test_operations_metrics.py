"""The operator's metrics say what happened: claims taken over after a lease ran out,
Redis failures by kind, waits by how they ended, the PostgreSQL pool, latency by outcome.
Each is read from a real copy's /metrics after real requests against real servers."""

from __future__ import annotations

from typing import Any, Callable

from loadgen.exposition import sample, scrape
from support import ORDER, Client, Database
from devserver.copies import FunctionCopy
from devserver.servers import free_port
from function.fingerprint import fingerprint
from function.inputs import order_request_from
from function.records import InFlight, encode, redis_key

FINGERPRINT = fingerprint(order_request_from(ORDER).canonical())


def redis_now_ms(redis_server: Any) -> int:
    seconds, micros = redis_server.client().time()
    return int(seconds) * 1000 + int(micros) // 1000


def leave_claim(redis_server: Any, key: str, *, lease_until_ms: int, owner: str = "crashed-copy") -> None:
    """The claim a copy left when it died mid-create, as the claim-or-read script writes
    it: stamped with its lease's end in Redis's clock, kept for twice the lease."""
    claim = InFlight(FINGERPRINT, owner, lease_until_ms)
    redis_server.client().set(redis_key("alice", key), encode(claim), px=60_000)


def test_a_claim_whose_lease_ran_out_is_taken_over_counted_once_and_makes_one_order(
    start_copies: Callable[..., list[FunctionCopy]], redis_server: Any, db: Database,
) -> None:
    (copy,) = start_copies(1)
    leave_claim(redis_server, "orphaned", lease_until_ms=redis_now_ms(redis_server) - 1)
    client = Client(copy.url)

    first = client.create(key="orphaned")
    again = client.create(key="orphaned")

    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert sample(scrape(copy.url), "orders_claims_taken_over_total") == 1
    assert db.order_count() == 1


def test_a_takeover_of_an_owner_that_committed_then_hung_returns_its_order_not_a_second(
    start_copies: Callable[..., list[FunctionCopy]], redis_server: Any, db: Database,
) -> None:
    (copy,) = start_copies(1)
    client = Client(copy.url)
    original = client.create(key="hung-after-commit")
    # Its owner committed, then hung before finishing: Redis still shows its claim, expired.
    leave_claim(redis_server, "hung-after-commit", lease_until_ms=redis_now_ms(redis_server) - 1)

    retry = client.create(key="hung-after-commit")

    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == original.json()
    text = scrape(copy.url)
    assert sample(text, "orders_claims_taken_over_total") == 1
    assert sample(text, "orders_idempotency_outcomes_total", '{outcome="replayed-postgres"}') == 1
    assert db.order_count() == 1


def test_a_claim_within_its_lease_is_waited_for_not_taken_over(
    start_copies: Callable[..., list[FunctionCopy]], redis_server: Any, db: Database,
) -> None:
    (copy,) = start_copies(1, IDEMPOTENCY_WAIT_SECONDS="0.2")
    leave_claim(redis_server, "alive", lease_until_ms=redis_now_ms(redis_server) + 60_000, owner="alive-copy")

    assert Client(copy.url).create(key="alive").status_code == 409

    text = scrape(copy.url)
    assert sample(text, "orders_claims_taken_over_total") == 0
    assert sample(text, "orders_waits_total", '{ended="conflict"}') == 1
    assert db.order_count() == 0


def test_every_wait_is_counted_once_by_how_it_ended(
    start_copies: Callable[..., list[FunctionCopy]], redis_server: Any, db: Database,
) -> None:
    (copy,) = start_copies(1, IDEMPOTENCY_WAIT_SECONDS="0.3")
    client = Client(copy.url)
    # found-in-postgres: the order exists, but Redis shows a live claim (a stale one).
    client.create(key="stale-claim")
    leave_claim(redis_server, "stale-claim", lease_until_ms=redis_now_ms(redis_server) + 60_000, owner="gone")
    # conflict: a live claim and no order.
    leave_claim(redis_server, "in-flight", lease_until_ms=redis_now_ms(redis_server) + 60_000, owner="busy")

    assert client.create(key="stale-claim").headers["Idempotent-Replayed"] == "true"
    assert client.create(key="in-flight").status_code == 409

    text = scrape(copy.url)
    ended = {how: sample(text, "orders_waits_total", f'{{ended="{how}"}}')
             for how in ("done", "found-in-postgres", "claimed", "conflict", "mismatch", "redis-down", "failed")}
    assert ended == {"done": 0, "found-in-postgres": 1, "claimed": 0, "conflict": 1, "mismatch": 0,
                     "redis-down": 0, "failed": 0}


def test_redis_failures_are_counted_by_kind_and_the_orders_are_still_made(
    start_copies: Callable[..., list[FunctionCopy]], db: Database,
) -> None:
    (copy,) = start_copies(1, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there

    answer = Client(copy.url).create(key="no-redis")

    assert answer.status_code == 201
    text = scrape(copy.url)
    assert sample(text, "orders_redis_failures_total", '{kind="connection"}') >= 1
    assert sample(text, "orders_redis_failures_total", '{kind="timeout"}') == 0
    assert sample(text, "orders_degraded_operations_total") == 1
    assert db.order_count() == 1


def test_the_pool_gauges_and_latency_by_outcome_add_up_after_requests(
    start_copies: Callable[..., list[FunctionCopy]], db: Database,
) -> None:
    (copy,) = start_copies(1, DATABASE_POOL_SIZE="3")
    client = Client(copy.url)
    for n in range(3):
        client.create(key=f"pool-{n}")
    client.create(key="pool-0")

    text = scrape(copy.url)
    assert sample(text, "orders_db_pool_connections_max") == 3
    assert sample(text, "orders_db_pool_connections_in_use") == 0
    assert sample(text, "orders_db_pool_waiting_requests") == 0
    assert sample(text, "orders_db_pool_wait_seconds_count") >= 3  # one per unit of work
    assert sample(text, "orders_order_duration_seconds_count", '{outcome="created"}') == 3
    assert sample(text, "orders_order_duration_seconds_count", '{outcome="replayed-redis"}') == 1
