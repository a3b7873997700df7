"""Redis as a Sentinel set (primary, replica, three sentinels): the primary killed or
demoted under load, a failover, and the function following it by itself. A failover
may lose the newest claims and answers; PostgreSQL's constraint keeps every key to one
order regardless, which is what these tests show."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, cast

import pytest

from devserver.copies import FunctionCopy
from devserver.sentinel import SentinelSet
from devserver.servers import RedisServer
from support import Database, idempotency_records
from scaleout import (
    StormResult,
    acknowledged,
    assert_acknowledged_orders_stored_once,
    assert_one_order_per_key,
    eventually,
    outcome_total,
    replay_storm_key,
    server_errors,
    storm,
    wait_for_orders,
)

pytestmark = [pytest.mark.multiprocess, pytest.mark.long]

COPIES = 4
STORM_KEYS = 100


def record_count(server: RedisServer) -> int:
    return len(idempotency_records(server))


def start_on_sentinels(start_copies: Callable[..., list[FunctionCopy]], sentinel_set: SentinelSet) -> list[str]:
    return [copy.url for copy in start_copies(COPIES, REDIS_URL=sentinel_set.url)]


def storm_with_a_fault(urls: list[str], db: Database, fault: Callable[[], object]) -> tuple[StormResult, int]:
    """A storm, and `fault()` once PostgreSQL holds a fifth of its orders; returns the
    storm's result and how many orders there were at the fault."""
    with ThreadPoolExecutor(1) as background:
        running = background.submit(storm, urls, keys=STORM_KEYS, duplicates=8)
        orders_at_fault = wait_for_orders(db, STORM_KEYS // 5, "storm")
        fault()
        return running.result(), orders_at_fault


def test_the_primary_killed_mid_storm_fails_over_and_no_key_gets_a_second_order(
    start_copies: Callable[..., list[FunctionCopy]], db: Database, sentinel_set: SentinelSet,
) -> None:
    urls = start_on_sentinels(start_copies, sentinel_set)
    old = sentinel_set.primary()

    result, orders_at_kill = storm_with_a_fault(urls, db, sentinel_set.kill_primary)
    new = sentinel_set.wait_for_failover(old)

    assert orders_at_kill < STORM_KEYS, "the storm was over before the primary was killed"
    assert new is not old
    assert_the_storm_made_one_order_per_key_and_kept_every_acknowledged_one(result, db)


def test_after_a_failover_every_acknowledged_order_replays_and_new_answers_are_kept_on_the_new_primary(
    start_copies: Callable[..., list[FunctionCopy]], db: Database, sentinel_set: SentinelSet,
) -> None:
    urls = start_on_sentinels(start_copies, sentinel_set)
    old = sentinel_set.primary()
    result, _ = storm_with_a_fault(urls, db, sentinel_set.kill_primary)
    new = sentinel_set.wait_for_failover(old)

    # Every order acknowledged around the failover is answered again, whether its
    # answer reached the new primary or was lost with the old one.
    for n, (key, order_id) in enumerate(acknowledged(result).items()):
        replay = replay_storm_key(urls[n % len(urls)], key)
        assert replay.status_code == 201, replay.text
        assert replay.json()["orderId"] == order_id
        assert replay.headers["Idempotent-Replayed"] == "true"
    # The copies find the new primary by themselves...
    eventually(lambda: answers_are_stored_on(new, urls), "every copy storing answers on the new primary")
    # ... and replays are served from it, not from PostgreSQL.
    from_redis = outcome_total(urls, "replayed-redis")
    keys = assert_new_keys_replay_on_another_copy(urls, "after-failover")
    assert outcome_total(urls, "replayed-redis") == from_redis + len(keys)


def test_the_old_primary_brought_back_rejoins_as_a_replica_and_answers_stay_on_the_new_primary(
    start_copies: Callable[..., list[FunctionCopy]], db: Database, sentinel_set: SentinelSet,
) -> None:
    urls = start_on_sentinels(start_copies, sentinel_set)
    old = sentinel_set.kill_primary()
    new = sentinel_set.wait_for_failover(old)

    sentinel_set.bring_back_as_replica(old)

    assert sentinel_set.primary() is new
    assert cast(dict[str, Any], old.client().info("replication"))["role"] == "slave"
    eventually(lambda: answers_are_stored_on(new, urls), "every copy storing answers on the new primary")
    keys = assert_new_keys_replay_on_another_copy(urls, "after-rejoin")
    assert db.order_count("storm") == len(keys)
    # The old primary holds the answers only as the new one's replica.
    eventually(lambda: record_count(old) == record_count(new), "the replica to catch up")


def test_a_demoted_primary_answering_readonly_is_redis_down_and_the_function_recovers_by_itself(
    start_copies: Callable[..., list[FunctionCopy]], db: Database, sentinel_set: SentinelSet,
) -> None:
    # SENTINEL FAILOVER keeps the old primary running as a replica, so connections the
    # copies still hold to it answer READONLY to every write instead of breaking.
    urls = start_on_sentinels(start_copies, sentinel_set)
    old = sentinel_set.primary()

    result, _ = storm_with_a_fault(urls, db, sentinel_set.demote_primary)
    new = sentinel_set.wait_for_failover(old)

    assert_the_storm_made_one_order_per_key_and_kept_every_acknowledged_one(result, db)
    eventually(lambda: answers_are_stored_on(new, urls), "every copy storing answers on the new primary")


def assert_the_storm_made_one_order_per_key_and_kept_every_acknowledged_one(result, db: Database) -> None:
    assert result.errors == [] and server_errors(result) == []
    assert set(result.statuses()) <= {201, 409}
    assert_one_order_per_key(result, db)
    assert_acknowledged_orders_stored_once(acknowledged(result), db, "storm")


def assert_new_keys_replay_on_another_copy(urls: list[str], prefix: str) -> list[str]:
    """New keys created through one copy each and replayed through the next: every
    replay is the identical answer, flagged as a replay. Returns the keys."""
    keys = [f"{prefix}-{n}" for n in range(2 * COPIES)]
    created = [replay_storm_key(urls[n % len(urls)], key) for n, key in enumerate(keys)]
    replays = [replay_storm_key(urls[(n + 1) % len(urls)], key) for n, key in enumerate(keys)]
    assert [r.status_code for r in created] == [201] * len(keys)
    assert [r.content for r in replays] == [r.content for r in created]
    assert {r.headers["Idempotent-Replayed"] for r in replays} == {"true"}
    return keys


def answers_are_stored_on(server: RedisServer, urls: list[str]) -> bool:
    """Whether a new key created through each copy leaves its answer on `server`
    (under the profile "probe", apart from the keys a test counts)."""
    before = record_count(server)
    for url in urls:
        probe = replay_storm_key(url, f"probe-{uuid.uuid4()}", profile="probe")
        assert probe.status_code == 201, probe.text  # Redis or not, creates never fail
    return record_count(server) == before + len(urls)
