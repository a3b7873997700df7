"""The storage floor: a raw Redis GET and a PostgreSQL single-row INSERT, through the
drivers the function uses (redis-py, pg8000), one client per thread.

They bound the function from below: a create costs at least one Redis script call, one
INSERT and one more Redis call; a replay at least one Redis call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pg8000.native
import redis

from function.database import connect_kwargs

from .stats import latency_figures

SCRATCH_TABLE = "bench_insert_floor"


def redis_get(redis_url: str, clients: int, seconds: float) -> dict[str, Any]:
    def one_client() -> Callable[[], object]:
        client = redis.Redis.from_url(redis_url)
        client.set("bench:floor", b"x" * 200)  # about the size of a finished answer
        return lambda: client.get("bench:floor")

    return _round_trips(one_client, clients, seconds)


def postgres_insert(database_url: str, clients: int, seconds: float) -> dict[str, Any]:
    setup = pg8000.native.Connection(**connect_kwargs(database_url, 10))
    setup.run(f"CREATE TABLE IF NOT EXISTS {SCRATCH_TABLE} (id bigserial PRIMARY KEY, payload text)")
    setup.close()

    def one_client() -> Callable[[], object]:
        connection = pg8000.native.Connection(**connect_kwargs(database_url, 10))
        return lambda: connection.run(f"INSERT INTO {SCRATCH_TABLE} (payload) VALUES (:p)", p="x" * 64)

    return _round_trips(one_client, clients, seconds)


def _round_trips(make_client: Callable[[], Callable[[], object]], clients: int, seconds: float) -> dict[str, Any]:
    """`clients` threads, each calling its own client in a loop for `seconds`."""
    calls = [make_client() for _ in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    deadline = time.perf_counter() + seconds

    def loop(index: int) -> None:
        call, record = calls[index], latencies[index].append
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            call()
            record(time.perf_counter() - started)

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    everything = [value for per_client in latencies for value in per_client]
    return {
        "clients": clients,
        "operations": len(everything),
        "throughput": round(len(everything) / elapsed, 1),
        **latency_figures(everything),
    }
