"""The contract's settings change what clients see. Each is given to the real app in this
process (parsed by the same Settings.from_env, tests/inprocess.py); a duplicate waiting on
another copy needs two processes."""

from __future__ import annotations

import threading
import time
from typing import Callable

import pytest
import requests

from devserver.copies import FunctionCopy
from devserver.servers import PostgresServer, RedisServer
from devserver.waiting import wait_until
from function.records import redis_key
from support import Client, Database, assert_problem, claim_held, redis_script_calls


def test_on_mismatch_replay_answers_a_changed_body_with_the_original_order(
    serve_in_process: Callable[..., Client], db: Database, redis_server: RedisServer
) -> None:
    client = serve_in_process(IDEMPOTENCY_ON_MISMATCH="replay")
    original = client.create({"productQuantity": 2}, key="k")

    changed = client.create({"productQuantity": 9}, key="k")
    redis_server.client().flushall()
    changed_after_flush = client.create({"productQuantity": 7}, key="k")

    for answer in (changed, changed_after_flush):
        assert answer.status_code == 201 and answer.content == original.content
        assert answer.headers["Idempotent-Replayed"] == "true"
    assert db.order_count() == 1


def test_without_required_keys_a_keyless_post_creates_an_order_each_time(
    serve_in_process: Callable[..., Client], db: Database
) -> None:
    client = serve_in_process(IDEMPOTENCY_KEY_REQUIRED="false")

    first, second = client.create(key=None), client.create(key=None)
    keyed, keyed_again = client.create(key="still-deduplicated"), client.create(key="still-deduplicated")

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["orderId"] != second.json()["orderId"]
    assert keyed_again.content == keyed.content
    assert db.order_count() == 3


def test_a_finished_key_leaves_redis_after_the_ttl_and_is_then_replayed_from_postgresql(
    serve_in_process: Callable[..., Client], db: Database, redis_server: RedisServer
) -> None:
    client = serve_in_process(IDEMPOTENCY_TTL_SECONDS="1")
    from_redis, from_postgres = client.outcome_count("replayed-redis"), client.outcome_count("replayed-postgres")
    original = client.create(key="short-lived")
    client.create(key="short-lived")
    assert client.outcome_count("replayed-redis") == from_redis + 1

    record = redis_key("alice", "short-lived")
    wait_until(lambda: not redis_server.client().exists(record), what="the answer's TTL to run out", timeout_seconds=30)
    replay = client.create(key="short-lived")

    assert replay.content == original.content
    assert client.outcome_count("replayed-postgres") == from_postgres + 1
    assert db.order_count() == 1


def test_a_duplicate_gives_up_after_the_wait_with_a_409_and_retry_after(
    serve_in_process: Callable[..., Client], db: Database, redis_server: RedisServer
) -> None:
    from function.records import InFlight, encode, redis_key

    client = serve_in_process(IDEMPOTENCY_WAIT_SECONDS="0.4")
    conflicts = client.outcome_count("conflict")
    # An original in flight elsewhere: its claim, held for 10 s.
    redis_server.client().set(redis_key("alice", "busy"), encode(InFlight(_fingerprint(), "elsewhere")), px=10_000)

    started = time.monotonic()
    answer = client.create(key="busy")
    waited = time.monotonic() - started

    assert_problem(answer, 409, "in flight")
    assert int(answer.headers["Retry-After"]) >= 1
    assert 0.4 <= waited < 3
    assert client.outcome_count("conflict") == conflicts + 1
    assert db.order_count() == 0


def test_without_auto_migrate_an_unmigrated_database_is_a_503_not_a_500(
    serve_in_process: Callable[..., Client], postgres: PostgresServer
) -> None:
    admin = postgres.connect()
    admin.run("DROP DATABASE IF EXISTS unmigrated")
    admin.run("CREATE DATABASE unmigrated")
    admin.close()
    client = serve_in_process(AUTO_MIGRATE="false", DATABASE_URL=postgres.url.rsplit("/", 1)[0] + "/unmigrated")

    assert_problem(client.create(key="k"), 503)


def _fingerprint() -> str:
    from function.fingerprint import fingerprint
    from function.validation import order_request_from
    from support import ORDER

    return fingerprint(order_request_from(ORDER).canonical())


@pytest.mark.multiprocess
def test_a_duplicate_on_another_copy_waits_for_the_original_and_answers_with_its_order(
    start_copies: Callable[..., list[FunctionCopy]], db: Database, postgres: PostgresServer, redis_server: RedisServer
) -> None:
    first_copy, second_copy = start_copies(2)
    # given: the original's INSERT is held back by an uncommitted row for the same key,
    # so it stays in flight while its duplicate arrives on the other copy.
    blocker = postgres.connect()
    blocker.run("BEGIN")
    blocker.run("INSERT INTO orders (profile_id, idempotency_key, fingerprint, product_quantity) "
                "VALUES ('alice', 'slow', 'held', 1)")
    answers: dict[str, requests.Response] = {}
    original = threading.Thread(target=lambda: answers.update(original=Client(first_copy.url).create(key="slow")))
    original.start()
    wait_until(lambda: claim_held(redis_server, "alice", "slow"), what="the original's claim", timeout_seconds=30)
    calls_before = redis_script_calls(redis_server)
    duplicate = threading.Thread(target=lambda: answers.update(duplicate=Client(second_copy.url).create(key="slow")))
    duplicate.start()
    # Its claim-or-read found the original's claim, and it polled again: it is waiting.
    wait_until(lambda: redis_script_calls(redis_server) >= calls_before + 2, what="the duplicate to wait",
               timeout_seconds=30)

    # when: the original may go on.
    blocker.run("ROLLBACK")
    blocker.close()
    original.join(timeout=30)
    duplicate.join(timeout=30)

    # then: one order, and the duplicate waited for it rather than failing.
    assert answers["original"].status_code == 201 and "Idempotent-Replayed" not in answers["original"].headers
    assert answers["duplicate"].status_code == 201
    assert answers["duplicate"].content == answers["original"].content
    assert answers["duplicate"].headers["Idempotent-Replayed"] == "true"
    assert Client(second_copy.url).outcome_count("waited") == 1
    assert db.order_count() == 1
