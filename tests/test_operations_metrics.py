"""The operator's metrics say what happened: claims taken over after a lease ran out,
Redis failures by kind, waits by how they ended, the PostgreSQL pool, latency by outcome.
Each is read from the real app's /metrics (in this process, tests/inprocess.py) after real
requests against real servers: counters as what the test's requests added to them."""

from __future__ import annotations

from typing import Any, Callable

from devserver.servers import free_port
from function.fingerprint import fingerprint
from function.records import InFlight, encode, redis_key
from function.validation import order_request_from
from loadgen.exposition import sample
from support import ORDER, Client, Database

FINGERPRINT = fingerprint(order_request_from(ORDER).canonical())


class Counted:
    """The app's counters when made; `rise` is what was added to one since."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.before = client.get("/metrics", profile=None).text

    def rise(self, name: str, labels: str = "") -> float:
        now = self.client.get("/metrics", profile=None).text
        return sample(now, name, labels) - sample(self.before, name, labels)


def redis_now_ms(redis_server: Any) -> int:
    seconds, micros = redis_server.client().time()
    return int(seconds) * 1000 + int(micros) // 1000


def leave_claim(redis_server: Any, key: str, *, lease_until_ms: int, owner: str = "crashed-copy") -> None:
    """The claim a copy left when it died mid-create, as the claim-or-read script writes
    it: stamped with its lease's end in Redis's clock, kept for twice the lease."""
    claim = InFlight(FINGERPRINT, owner, lease_until_ms)
    redis_server.client().set(redis_key("alice", key), encode(claim), px=60_000)


def test_a_claim_whose_lease_ran_out_is_taken_over_counted_once_and_makes_one_order(
    app: Client, redis_server: Any, db: Database,
) -> None:
    counted = Counted(app)
    leave_claim(redis_server, "orphaned", lease_until_ms=redis_now_ms(redis_server) - 1)
    client = app

    first = client.create(key="orphaned")
    again = client.create(key="orphaned")

    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert counted.rise("orders_claims_taken_over_total") == 1
    assert db.order_count() == 1


def test_a_takeover_of_an_owner_that_committed_then_hung_returns_its_order_not_a_second(
    app: Client, redis_server: Any, db: Database,
) -> None:
    client = app
    original = client.create(key="hung-after-commit")
    counted = Counted(client)
    # Its owner committed, then hung before finishing: Redis still shows its claim, expired.
    leave_claim(redis_server, "hung-after-commit", lease_until_ms=redis_now_ms(redis_server) - 1)

    retry = client.create(key="hung-after-commit")

    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == original.json()
    assert counted.rise("orders_claims_taken_over_total") == 1
    assert counted.rise("orders_idempotency_outcomes_total", '{outcome="replayed-postgres"}') == 1
    assert db.order_count() == 1


def test_a_claim_within_its_lease_is_waited_for_not_taken_over(
    serve_in_process: Callable[..., Client], redis_server: Any, db: Database,
) -> None:
    client = serve_in_process(IDEMPOTENCY_WAIT_SECONDS="0.2")
    counted = Counted(client)
    leave_claim(redis_server, "alive", lease_until_ms=redis_now_ms(redis_server) + 60_000, owner="alive-copy")

    assert client.create(key="alive").status_code == 409

    assert counted.rise("orders_claims_taken_over_total") == 0
    assert counted.rise("orders_waits_total", '{ended="conflict"}') == 1
    assert db.order_count() == 0


def test_every_wait_is_counted_once_by_how_it_ended(
    serve_in_process: Callable[..., Client], redis_server: Any, db: Database,
) -> None:
    client = serve_in_process(IDEMPOTENCY_WAIT_SECONDS="0.3")
    counted = Counted(client)
    # found-in-postgres: the order exists, but Redis shows a live claim (a stale one).
    client.create(key="stale-claim")
    leave_claim(redis_server, "stale-claim", lease_until_ms=redis_now_ms(redis_server) + 60_000, owner="gone")
    # conflict: a live claim and no order.
    leave_claim(redis_server, "in-flight", lease_until_ms=redis_now_ms(redis_server) + 60_000, owner="busy")

    assert client.create(key="stale-claim").headers["Idempotent-Replayed"] == "true"
    assert client.create(key="in-flight").status_code == 409

    ended = {how: counted.rise("orders_waits_total", f'{{ended="{how}"}}')
             for how in ("done", "found-in-postgres", "claimed", "conflict", "mismatch", "redis-down", "failed")}
    assert ended == {"done": 0, "found-in-postgres": 1, "claimed": 0, "conflict": 1, "mismatch": 0,
                     "redis-down": 0, "failed": 0}


def test_redis_failures_are_counted_by_kind_and_the_orders_are_still_made(
    serve_in_process: Callable[..., Client], db: Database,
) -> None:
    client = serve_in_process(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    counted = Counted(client)

    answer = client.create(key="no-redis")

    assert answer.status_code == 201
    assert counted.rise("orders_redis_failures_total", '{kind="connection"}') >= 1
    assert counted.rise("orders_redis_failures_total", '{kind="timeout"}') == 0
    assert counted.rise("orders_degraded_operations_total") == 1
    assert db.order_count() == 1


def test_the_pool_gauges_and_latency_by_outcome_add_up_after_requests(
    serve_in_process: Callable[..., Client], db: Database,
) -> None:
    client = serve_in_process(DATABASE_POOL_SIZE="3")
    counted = Counted(client)
    for n in range(3):
        client.create(key=f"pool-{n}")
    client.create(key="pool-0")

    text = client.get("/metrics", profile=None).text
    assert sample(text, "orders_db_pool_connections_max") == 3
    assert sample(text, "orders_db_pool_connections_in_use") == 0
    assert sample(text, "orders_db_pool_waiting_requests") == 0
    assert counted.rise("orders_db_pool_wait_seconds_count") >= 3  # one per unit of work
    assert counted.rise("orders_order_duration_seconds_count", '{outcome="created"}') == 3
    assert counted.rise("orders_order_duration_seconds_count", '{outcome="replayed-redis"}') == 1
