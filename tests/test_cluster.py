"""Redis as a Redis Cluster of real processes (three primaries, a replica each): records
spread over every primary, a duplicate storm across copies, a primary killed mid-storm
and replaced by its replica, a slot moved between primaries while its keys are claimed,
a shard lost with its replica, the whole cluster gone, and a short soak on a cluster. Whatever the cluster does, PostgreSQL's constraint keeps
every key to one order, and the copies find the cluster again by themselves."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import pytest
import requests
from redis.crc import key_slot

from devserver import netfaults
from devserver.cluster import RedisCluster
from function.labels import RedisFailure
from function.records import KEY_PREFIX, redis_key
from scaleout import (
    STORM_PROFILE,
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
from soak.report import summary, verdict
from soak.timeline import SoakPlan, run_soak
from support import Client, Database, metric

pytestmark = [pytest.mark.multiprocess, pytest.mark.long]

COPIES = 4
STORM_KEYS = 100


def start_on_cluster(start_copies, cluster: RedisCluster) -> list[str]:
    return [copy.url for copy in start_copies(COPIES, REDIS_URL=cluster.url)]


def records_by_primary(cluster: RedisCluster) -> dict[int, int]:
    return {port: len(keys) for port, keys in cluster.keys(KEY_PREFIX + b"*").items()}


def health(url: str) -> tuple[int, dict[str, str]]:
    answer = requests.get(url + "/healthz", timeout=10)
    return answer.status_code, answer.json()


def redis_failures(urls: list[str], kind: str | None = None) -> float:
    """orders_redis_failures_total of one kind (or of every kind) summed over copies."""
    kinds = [kind] if kind else [failure.value for failure in RedisFailure]
    return sum(metric(Client(url), "orders_redis_failures_total", f'{{kind="{k}"}}') for url in urls for k in kinds)


def storm_with_a_fault(urls: list[str], db: Database, fault: Callable[[], object]) -> tuple[StormResult, int]:
    """A storm, and `fault()` once PostgreSQL holds a fifth of its orders."""
    with ThreadPoolExecutor(1) as background:
        running = background.submit(storm, urls, keys=STORM_KEYS, duplicates=8)
        orders_at_fault = wait_for_orders(db, STORM_KEYS // 5, STORM_PROFILE)
        fault()
        return running.result(), orders_at_fault


def assert_the_storm_made_one_order_per_key_and_kept_every_acknowledged_one(result: StormResult, db: Database) -> None:
    assert result.errors == [] and server_errors(result) == []
    assert set(result.statuses()) <= {201, 409}
    assert_one_order_per_key(result, db)
    assert_acknowledged_orders_stored_once(acknowledged(result), db, STORM_PROFILE)


def assert_new_keys_replay_from_the_cluster(urls: list[str], prefix: str) -> list[str]:
    """New keys created through one copy each and replayed through the next: every
    replay is the identical answer, and Redis (not PostgreSQL) answered it."""
    eventually(lambda: all(health(url)[1]["redis"] == "ok" for url in urls), "every copy to see the cluster")
    from_redis = outcome_total(urls, "replayed-redis")
    keys = [f"{prefix}-{n}" for n in range(2 * COPIES)]
    created = [replay_storm_key(urls[n % len(urls)], key) for n, key in enumerate(keys)]
    replays = [replay_storm_key(urls[(n + 1) % len(urls)], key) for n, key in enumerate(keys)]
    assert [r.status_code for r in created] == [201] * len(keys)
    assert [r.content for r in replays] == [r.content for r in created]
    assert {r.headers["Idempotent-Replayed"] for r in replays} == {"true"}
    assert outcome_total(urls, "replayed-redis") == from_redis + len(keys)
    return keys


def test_records_spread_over_every_primary_and_replay_from_any_copy(
    start_copies, db: Database, redis_cluster: RedisCluster,
) -> None:
    urls = start_on_cluster(start_copies, redis_cluster)

    keys = assert_new_keys_replay_from_the_cluster(urls, "spread") + [f"more-{n}" for n in range(40)]
    for n, key in enumerate(keys):
        assert replay_storm_key(urls[n % len(urls)], key).status_code == 201

    spread = records_by_primary(redis_cluster)
    assert len(spread) == 3 and all(count > 0 for count in spread.values()), spread
    assert sum(spread.values()) == len(keys)
    assert redis_failures(urls) == 0
    assert health(urls[0]) == (200, {"status": "ok", "postgres": "ok", "redis": "ok"})


def test_a_duplicate_storm_across_copies_makes_one_order_per_key_on_a_cluster(
    start_copies, db: Database, redis_cluster: RedisCluster,
) -> None:
    urls = start_on_cluster(start_copies, redis_cluster)

    result = storm(urls, keys=STORM_KEYS, duplicates=8)

    assert_the_storm_made_one_order_per_key_and_kept_every_acknowledged_one(result, db)
    assert len(acknowledged(result)) == STORM_KEYS
    assert len(result.served_by()) == COPIES
    assert sum(records_by_primary(redis_cluster).values()) == STORM_KEYS
    assert redis_failures(urls) == 0


def test_a_primary_killed_mid_storm_is_replaced_by_its_replica_and_rejoins_as_one_with_one_order_per_key(
    start_copies, db: Database, redis_cluster: RedisCluster,
) -> None:
    urls = start_on_cluster(start_copies, redis_cluster)
    old = redis_cluster.primaries()[0]

    result, orders_at_kill = storm_with_a_fault(urls, db, lambda: redis_cluster.kill_primary(old))
    new = redis_cluster.wait_for_failover(old)
    redis_cluster.bring_back(old)

    assert orders_at_kill < STORM_KEYS, "the storm was over before the primary was killed"
    assert new is not old and new in redis_cluster.primaries()
    assert old.role() == "slave" and old not in redis_cluster.primaries()
    assert_the_storm_made_one_order_per_key_and_kept_every_acknowledged_one(result, db)
    # Every acknowledged order is answered again, whether its answer reached the
    # promoted replica or was lost with the killed primary.
    for n, (key, order_id) in enumerate(acknowledged(result).items()):
        replay = replay_storm_key(urls[n % len(urls)], key)
        assert replay.status_code == 201 and replay.json()["orderId"] == order_id
    eventually(lambda: all(health(url) == (200, {"status": "ok", "postgres": "ok", "redis": "ok"}) for url in urls),
               "every copy healthy")
    keys = assert_new_keys_replay_from_the_cluster(urls, "after-failover")
    assert db.order_count(STORM_PROFILE) == STORM_KEYS + len(keys)


def keys_in_one_slot(count: int, prefix: str) -> tuple[int, list[str]]:
    """`count` idempotency keys whose records all hash to one slot (the first one's)."""
    names = (f"{prefix}-{n}" for n in itertools.count())
    first = next(names)
    slot = key_slot(redis_key(STORM_PROFILE, first))
    keys = [first]
    for name in names:
        if len(keys) == count:
            return slot, keys
        if key_slot(redis_key(STORM_PROFILE, name)) == slot:
            keys.append(name)
    raise AssertionError("unreachable")


def duplicates_at_once(urls: list[str], keys: list[str], each: int) -> dict[str, list[requests.Response]]:
    """Every key `each` times, all released together over the copies."""
    sends = [(key, urls[n % len(urls)]) for n, key in enumerate(k for k in keys for _ in range(each))]
    with ThreadPoolExecutor(len(sends)) as pool:
        answers = list(pool.map(lambda send: (send[0], replay_storm_key(send[1], send[0])), sends))
    by_key: dict[str, list[requests.Response]] = {key: [] for key in keys}
    for key, answer in answers:
        by_key[key].append(answer)
    return by_key


def assert_each_key_answered_with_one_order(answers: dict[str, list[requests.Response]]) -> dict[str, str]:
    order_of: dict[str, str] = {}
    for key, responses in answers.items():
        assert {r.status_code for r in responses} <= {201, 409}, [r.text for r in responses]
        orders = {r.json()["orderId"] for r in responses if r.status_code == 201}
        assert len(orders) <= 1, key
        if orders:
            order_of[key] = orders.pop()
    return order_of


def test_a_slot_moved_between_primaries_while_its_keys_are_claimed_is_followed_without_a_redis_failure(
    start_copies, db: Database, redis_cluster: RedisCluster,
) -> None:
    urls = start_on_cluster(start_copies, redis_cluster)
    slot, keys = keys_in_one_slot(30, "moving")
    before, during, after = keys[:10], keys[10:20], keys[20:]
    source = redis_cluster.owner_of(slot)
    target = next(node for node in redis_cluster.primaries() if node is not source)
    orders = assert_each_key_answered_with_one_order(duplicates_at_once(urls, before, 1))

    # Importing/migrating: keys still on the source are served there, new ones are
    # ASKed over to the target.
    redis_cluster.begin_migration(slot, target)
    orders |= assert_each_key_answered_with_one_order(duplicates_at_once(urls, during + before, 4))
    # The keys MIGRATEd while a storm claims the last third and replays the rest.
    with ThreadPoolExecutor(1) as background:
        running = background.submit(duplicates_at_once, urls, after + during + before, 4)
        moved = redis_cluster.move_keys(slot, target)
        orders |= assert_each_key_answered_with_one_order(running.result())
    # The slot is the target's: a copy still asking the source is MOVED over.
    redis_cluster.finish_migration(slot, target)
    final = duplicates_at_once(urls, keys, 2)

    assert moved > 0
    assert assert_each_key_answered_with_one_order(final) == orders and len(orders) == len(keys)
    assert db.order_count(STORM_PROFILE) == len(keys)
    assert redis_failures(urls) == 0
    in_slot = [key for key in target.keys(KEY_PREFIX + b"*") if key_slot(key) == slot]
    assert len(in_slot) == len(keys)
    assert not any(key_slot(key) == slot for key in source.keys(KEY_PREFIX + b"*"))
    # Replays of every key are served by the target now.
    from_redis = outcome_total(urls, "replayed-redis")
    for n, key in enumerate(keys):
        assert replay_storm_key(urls[n % len(urls)], key).json()["orderId"] == orders[key]
    assert outcome_total(urls, "replayed-redis") == from_redis + len(keys)


def test_the_whole_cluster_down_leaves_postgres_to_decide_and_the_copies_find_it_again(
    start_copies, db: Database, redis_cluster: RedisCluster,
) -> None:
    urls = start_on_cluster(start_copies, redis_cluster)

    result, _ = storm_with_a_fault(urls, db, redis_cluster.stop_all)
    assert_the_storm_made_one_order_per_key_and_kept_every_acknowledged_one(result, db)
    degraded = [health(url) for url in urls]
    during = [f"during-outage-{n}" for n in range(20)]
    orders = assert_each_key_answered_with_one_order(duplicates_at_once(urls, during, 4))
    redis_cluster.start_all()

    assert degraded == [(200, {"status": "degraded", "postgres": "ok", "redis": "down"})] * COPIES
    assert len(orders) == len(during) and db.order_count(STORM_PROFILE) == STORM_KEYS + len(during)
    assert outcome_total(urls, "replayed-postgres") > 0
    assert redis_failures(urls, "connection") > 0
    assert_new_keys_replay_from_the_cluster(urls, "after-outage")



def test_a_shard_lost_with_its_replica_leaves_postgres_to_decide_and_the_copies_come_back(
    start_copies, db: Database, redis_cluster: RedisCluster,
) -> None:
    urls = start_on_cluster(start_copies, redis_cluster)
    primary = redis_cluster.primaries()[0]
    replica = redis_cluster.replica_of(primary)
    survivors = [node for node in redis_cluster.nodes if node not in (primary, replica)]

    replica.kill()
    primary.kill()
    eventually(lambda: all(node.info()["cluster_state"] == "fail" for node in survivors), "the cluster to fail")
    keys = [f"clusterdown-{n}" for n in range(20)]
    orders = assert_each_key_answered_with_one_order(duplicates_at_once(urls, keys, 4))
    degraded = health(urls[0])
    redis_cluster.start_all()

    assert len(orders) == len(keys) and db.order_count(STORM_PROFILE) == len(keys)
    assert degraded == (200, {"status": "degraded", "postgres": "ok", "redis": "down"})
    # The lost shard's nodes refuse connections; the primaries still up answer CLUSTERDOWN.
    assert redis_failures(urls, "cluster") > 0 and redis_failures(urls, "connection") > 0
    assert outcome_total(urls, "replayed-postgres") > 0
    assert_new_keys_replay_from_the_cluster(urls, "after-clusterdown")


def test_a_short_soak_on_a_cluster_with_a_primary_killed_and_a_copy_killed_keeps_every_acknowledged_order(
    redis_cluster_servers: RedisCluster,
) -> None:
    # The soak starts a cluster of its own; the fixture only skips where redis-cli is missing.
    report = run_soak(SoakPlan(seconds=20, copies=3, clients=3, redis="cluster"), say=lambda line: None)
    problems, _ = verdict(report)

    assert problems == [], summary(report)
    expected = ["kill a cluster primary", "kill a copy and start another"]
    if netfaults.unavailable_reason() is None:  # the partitions too, a cluster primary's port for Redis's
        expected = ["black-hole PostgreSQL", "reset Redis", "kill a cluster primary", "reset PostgreSQL",
                    "kill a copy and start another", "black-hole Redis"]
    assert [event.split(": ")[1] for event in report.events] == expected, summary(report)
    assert report.audit.acknowledged > 200
    assert {status for _, status in report.ledger.answers} <= {0, 200, 201, 409, 503}
