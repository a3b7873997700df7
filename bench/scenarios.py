"""The measured scenarios, each at one concurrency: the two floors, create with new keys,
replay from Redis, replay after Redis was flushed (PostgreSQL), and a duplicate storm.

Each point is a warm-up, then a measured run with the same load generator; each also
checks that the function took the path the scenario names (its /metrics outcome
counters, and for the storm the orders PostgreSQL holds afterwards).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis

from devserver.copies import FunctionCopy
from devserver.stack import Connection
from loadgen.audit import audit
from loadgen import exposition
from loadgen.closed_loop import Measurement, NextRequest, measure
from loadgen.exposition import sample, scrape

from . import traffic
from .cpu import tree_cpu_seconds, tree_usage
from .plan import Plan
from .stats import figures



class Scenarios:
    def __init__(
        self, plan: Plan, *, function: FunctionCopy, unbatched: FunctionCopy, floors: dict[str, FunctionCopy],
        database_url: str, redis_url: str, storage_pids: list[int], postgres_pid: int | None, run_id: str,
    ) -> None:
        self.plan = plan
        self.function_url = function.url
        self.unbatched_url = unbatched.url
        self.floor_urls = {name: copy.url for name, copy in floors.items()}
        self._pids = {copy.url: _pid(copy) for copy in [function, unbatched, *floors.values()]}
        self._storage_pids = storage_pids
        self._postgres_pids = [postgres_pid] if postgres_pid is not None else []
        self.database_url = database_url
        self.redis = redis.Redis.from_url(redis_url)
        self.run_id = run_id
        self.seeded_profile = f"bench-seeded-{run_id}"
        self._seeded_keys: list[str] = []
        self._unused_seeded = 0  # seeded keys after this one were never replayed yet
        self._point_numbers = itertools.count()  # new keys in every point, round after round

    def seed(self) -> None:
        """Orders made straight in PostgreSQL, identical to what the function makes, so
        replays after a flush have a fresh key for every request without creating first."""
        with Connection(self.database_url) as connection:
            connection.native.run(
                "INSERT INTO orders (profile_id, idempotency_key, fingerprint, product_id, product_quantity)"
                " SELECT :profile, 'seeded-' || g, :fingerprint, :product, :quantity"
                " FROM generate_series(1, :count) AS g",
                profile=self.seeded_profile, fingerprint=traffic.order_fingerprint(),
                product=traffic.PRODUCT, quantity=traffic.QUANTITY, count=self.plan.seed_keys,
            )
            connection.native.run("ANALYZE orders")
        self._seeded_keys = [f"seeded-{n}" for n in range(1, self.plan.seed_keys + 1)]
        # The first replay_keys serve the Redis-path replay; the rest are spent once each.
        self._unused_seeded = self.plan.replay_keys

    def floor(self, name: str, connections: int) -> dict[str, Any]:
        url = self.floor_urls[name]
        if name == "floorReplay":  # the replay point's requests (the floor keeps an answer per key)
            replays = [traffic.create_request(url, self.seeded_profile, key)
                       for key in self._seeded_keys[: self.plan.replay_keys]]
            return self._point(url, connections, traffic.cycling(replays))
        return self._point(url, connections, traffic.new_keys(url, "bench-floor", self._new_prefix()))

    def create(self, connections: int) -> dict[str, Any]:
        profile = f"bench-create-{self.run_id}"
        stream = traffic.new_keys(self.function_url, profile, self._new_prefix())
        return self._point(self.function_url, connections, stream, expect_outcome="created")

    def create_unbatched(self, connections: int) -> dict[str, Any]:
        """The same creates on the copy with group commit off (DATABASE_BATCH_MAX=1)."""
        profile = f"bench-create-{self.run_id}"
        stream = traffic.new_keys(self.unbatched_url, profile, self._new_prefix())
        return self._point(self.unbatched_url, connections, stream, expect_outcome="created")

    def replay(self, connections: int) -> dict[str, Any]:
        """Finished keys replayed over and over, every one of them already in Redis."""
        prepared = self.prepare_replays()
        return self._point(self.function_url, connections, traffic.cycling(prepared),
                           expect_outcome="replayed-redis")

    def prepare_replays(self) -> list[bytes]:
        """The replay set's requests, each sent once so Redis holds its answer (after a
        flush that first pass is answered by PostgreSQL and written back)."""
        prepared = [
            traffic.create_request(self.function_url, self.seeded_profile, key)
            for key in self._seeded_keys[: self.plan.replay_keys]
        ]
        measure(self.function_url, 16, traffic.once_each(prepared), seconds=60)
        return prepared

    def replay_after_flush(self, connections: int) -> dict[str, Any]:
        """Redis flushed, then each request a seeded key not replayed since: every answer
        comes from PostgreSQL (and is written back to Redis, as after a real flush)."""
        self.redis.flushall()
        prepared = [
            traffic.create_request(self.function_url, self.seeded_profile, key)
            for key in self._seeded_keys[self._unused_seeded:]
        ]
        stream = traffic.once_each(prepared)
        result = self._point(self.function_url, connections, stream, expect_outcome="replayed-postgres")
        self._unused_seeded += result["requests"] + result.pop("warmupRequests")
        if result["requests"] and self._unused_seeded >= len(self._seeded_keys):
            result["note"] = "ran out of seeded keys before the time was up"
        return result

    def storm(self, connections: int) -> dict[str, Any]:
        profile = f"bench-storm-{self.run_id}"
        prefix = f"storm-{self._new_prefix()}"
        stream = traffic.storm(self.function_url, profile, prefix, self.plan.storm_duplicates)
        result, measured = self._measured_point(self.function_url, connections, stream)
        result["storm"] = _check_storm(measured, self.database_url, profile, prefix)
        return result

    def _new_prefix(self) -> str:
        return f"{self.run_id}-p{next(self._point_numbers)}"

    def _point(
        self, url: str, connections: int, stream: NextRequest, *, expect_outcome: str | None = None,
    ) -> dict[str, Any]:
        return self._measured_point(url, connections, stream, expect_outcome=expect_outcome)[0]

    def _measured_point(
        self, url: str, connections: int, stream: NextRequest, *, expect_outcome: str | None = None,
    ) -> tuple[dict[str, Any], Measurement]:
        """Warm-up, then the measured run: its figures, CPU, and the path it took."""
        warmup = measure(url, connections, stream, seconds=self.plan.warmup_seconds)
        before = outcome_counts(url) if expect_outcome else Counter()
        batches = insert_batches(url)
        server, storage_cpu = tree_usage([self._pids[url]]), tree_cpu_seconds(self._storage_pids)
        postgres_cpu = tree_cpu_seconds(self._postgres_pids)
        measured = measure(url, connections, stream, seconds=self.plan.seconds)
        server = tree_usage([self._pids[url]]) - server
        server_cpu, storage_cpu = server.cpu_seconds, tree_cpu_seconds(self._storage_pids) - storage_cpu
        postgres_cpu = tree_cpu_seconds(self._postgres_pids) - postgres_cpu
        batches = insert_batches(url) - batches
        result = figures(measured)
        result["warmupRequests"] = len(warmup.answers)
        if measured.answers:
            # Copy at ~1.0: its one worker process is busy all the time (bound by the GIL).
            result["serverCpuUtilisation"] = round(server_cpu / measured.wall_seconds, 2)
            result["serverCpuMicrosecondsPerRequest"] = round(server_cpu / len(measured.answers) * 1e6)
            result["storageCpuMicrosecondsPerRequest"] = round(storage_cpu / len(measured.answers) * 1e6)
            result["serverContextSwitchesPerRequest"] = round(server.voluntary_switches / len(measured.answers), 1)
            # All PostgreSQL's processes; per created order where the point created any.
            created = (outcome_counts(url) - before)["created"] if expect_outcome else 0
            per = created or len(measured.answers)
            result["postgresCpuMicrosecondsPerOrder" if created else "postgresCpuMicrosecondsPerRequest"] = (
                round(postgres_cpu / per * 1e6))
        if batches.statements:
            result["insertBatchSizeMean"] = round(batches.rows / batches.statements, 2)
        if expect_outcome:
            took = outcome_counts(url) - before
            result["outcomes"] = dict(took)
            result["tookExpectedPath"] = took[expect_outcome] == len(measured.answers)
        return result, measured


def outcome_counts(url: str) -> Counter[str]:
    """The function's idempotency outcome counters (per worker: exact with WORKERS=1)."""
    return exposition.outcome_counts(scrape(url))


@dataclass(frozen=True)
class Batches:
    statements: float  # INSERTs a copy sent (orders_insert_batch_creates_count)
    rows: float  # creates they carried (orders_insert_batch_creates_sum)

    def __sub__(self, earlier: Batches) -> Batches:
        return Batches(self.statements - earlier.statements, self.rows - earlier.rows)


def insert_batches(url: str) -> Batches:
    """The copy's group-commit histogram totals (0 for a floor, which has none)."""
    text = scrape(url)
    return Batches(sample(text, "orders_insert_batch_creates_count"), sample(text, "orders_insert_batch_creates_sum"))


def _check_storm(measured: Measurement, database_url: str, profile: str, prefix: str) -> dict[str, Any]:
    """Every storm answer against the one order stored for its key (productId = key)."""
    with Connection(database_url) as connection:
        stored = audit(connection.native, profile_pattern=profile, acknowledged={}).stored
    mine = {key: orders for (_, key), orders in stored.items() if key.startswith(prefix + "-")}
    original = 0
    for answer in measured.answers:
        if answer.status == 201:
            document = json.loads(answer.body)
            orders = mine.get(document["productId"], [])
            original += len(orders) == 1 and orders[0].order_id == document["orderId"]
    statuses = Counter(answer.status for answer in measured.answers)
    total = len(measured.answers)
    return {
        "keys": len(mine),
        "duplicatesCreated": sum(len(orders) - 1 for orders in mine.values()),
        "answersCarryingOriginal": original,
        "originalShare": round(original / total, 4) if total else None,
        "conflicts409": statuses[409],
    }


def _pid(copy: FunctionCopy) -> int:
    assert copy.process is not None, "start the copy first"
    return copy.process.pid

