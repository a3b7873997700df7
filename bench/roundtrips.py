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

from function.claims import CLAIM_OR_READ
from function.database import connect_kwargs
from function.targets import parse_database_url
from function.orders import INSERT_UNLESS_KEY_EXISTS

from .stats import latency_figures
from .traffic import PRODUCT

SCRATCH_TABLE = "bench_insert_floor"


def redis_get(redis_url: str, clients: int, seconds: float) -> dict[str, Any]:
    def one_client() -> Callable[[], object]:
        client = redis.Redis.from_url(redis_url)
        client.set("bench:floor", b"x" * 200)  # about the size of a finished answer
        return lambda: client.get("bench:floor")

    return _round_trips(one_client, clients, seconds)


def postgres_insert(database_url: str, clients: int, seconds: float) -> dict[str, Any]:
    setup = pg8000.native.Connection(**connect_kwargs(parse_database_url(database_url), 10))
    setup.run(f"CREATE TABLE IF NOT EXISTS {SCRATCH_TABLE} (id bigserial PRIMARY KEY, payload text)")
    setup.close()

    def one_client() -> Callable[[], object]:
        connection = pg8000.native.Connection(**connect_kwargs(parse_database_url(database_url), 10))
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


def client_cpu(database_url: str, redis_url: str, calls: int = 1000) -> dict[str, Any]:
    """CPU microseconds the drivers spend per call in this process, for the function's own
    statements: what a copy pays on top of the server's work, under the GIL.

    pg8000's `Connection.run` re-parses the SQL text for :named parameters on every call
    (pg8000.native.to_statement, pure Python) and sends an unnamed Parse each time; a
    prepared statement does both once per connection.
    """
    connection = pg8000.native.Connection(**connect_kwargs(parse_database_url(database_url), 10))
    numbers = iter(range(10**9))

    def row() -> dict[str, Any]:
        return {"profile": "bench-driver", "key": f"driver-{next(numbers)}", "fingerprint": "f",
                "product_id": PRODUCT, "quantity": 1}

    prepared = connection.prepare(INSERT_UNLESS_KEY_EXISTS)
    client = redis.Redis.from_url(redis_url)
    claim_or_read = client.register_script(CLAIM_OR_READ)
    claim = '{"state":"in_flight","fingerprint":"' + "f" * 64 + '","owner":"bench-owner-token"}'
    figures = {
        "pg8000 run(), as function/orders.py does": _cpu_per_call(
            lambda: connection.run(INSERT_UNLESS_KEY_EXISTS, **row()), calls),
        "pg8000 prepared statement": _cpu_per_call(lambda: prepared.run(**row()), calls),
        "redis-py claim script (EVALSHA)": _cpu_per_call(
            lambda: claim_or_read(keys=["bench:claim"], args=[claim, 30000]), calls),
        "redis-py GET": _cpu_per_call(lambda: client.get("bench:claim"), calls),
    }
    connection.close()
    return {"microsecondsPerCall": figures, "hiredis": bool(redis.utils.HIREDIS_AVAILABLE)}


def _cpu_per_call(call: Callable[[], object], calls: int) -> float:
    """Best of three batches: other load on the machine only ever adds to it."""
    call()
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(calls):
            call()
        best = min(best, (time.process_time() - started) / calls)
    return round(best * 1e6, 1)
