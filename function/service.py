"""The parts of a running copy, wired once per worker process on first use.

functions-framework imports the function in gunicorn's master and then forks workers,
so nothing here connects at import time: each worker builds its own pool and Redis
client, on the event loop that will use them (an asyncio client belongs to one loop),
and its own tracer with its exporter thread (a thread does not survive a fork).
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass

from . import logs, migrate
from .claims import ClaimStore
from .database import Database
from .idempotency import IdempotencyEngine
from .orders import OrderStore
from .settings import Settings
from .tracing import Tracing


@dataclass(frozen=True)
class Service:
    settings: Settings
    claims: ClaimStore
    orders: OrderStore
    engine: IdempotencyEngine
    tracing: Tracing | None  # None: tracing off, and nothing of OpenTelemetry loaded


_built: dict[int, Service] = {}


def for_this_process(settings: Settings, *, schema_applied: bool = False) -> Service:
    """Called on the event loop's thread only, so building needs no lock."""
    service = _built.get(os.getpid())
    if service is None:
        _built.clear()  # an inherited parent's entry is not ours to use
        service = _built[os.getpid()] = _build(settings, schema_applied)
        _report_serving_stack()
    return service


def batches_in_flight(settings: Settings) -> int:
    """Create batches a worker runs at once. Group commit off: one create per connection,
    as many as the pool has. On: half the pool, rounded up. Two batches overlap (one
    commits while the next is sent), so a slow commit does not stall creates; fewer in
    flight make the queued creates batch more (bench: 16 connections, pool 4, two in
    flight made batches of ~2.5 and the most creates/s; four, ~2 and fewer creates/s;
    one, ~4 but a slow commit then holds every create); the rest of the pool stays free
    for reads (a waiting duplicate's check, GET /orders)."""
    if settings.database_batch_max == 1:
        return settings.database_pool_size
    return (settings.database_pool_size + 1) // 2


def _build(settings: Settings, schema_applied: bool) -> Service:
    # Normally the schema was applied before the server started (startup.py); if
    # PostgreSQL was not reachable then, it is applied before this worker's first query.
    pending = settings.auto_migrate and not schema_applied
    database = Database(
        settings.database,
        pool_size=settings.database_pool_size,
        transaction_pooling=settings.database_pooling == "transaction",
        connect_timeout_seconds=settings.database_connect_timeout_seconds,
        statement_timeout_seconds=settings.database_statement_timeout_seconds,
        before_first_query=(
            (lambda connection: migrate.apply_migrations(connection, settings.migration_timeout_seconds))
            if pending else None
        ),
    )
    tracing = Tracing(settings.database) if settings.tracing else None
    claims = ClaimStore(settings.redis, timeout_seconds=settings.redis_timeout_seconds, tracing=tracing)
    orders = OrderStore(database, tracing, batch_max=settings.database_batch_max,
                        batches_in_flight=batches_in_flight(settings))
    engine = IdempotencyEngine(settings, claims, orders, tracing)
    return Service(settings, claims, orders, engine, tracing)


def _report_serving_stack() -> None:
    """uvicorn uses uvloop and httptools only when they import; without them a copy
    serves at a fraction of the speed, so say which were picked (once per worker)."""
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    parser = "httptools" if "uvicorn.protocols.http.httptools_impl" in sys.modules else "h11"
    fields = {"eventLoop": "uvloop" if loop == "uvloop" else "asyncio", "httpParser": parser}
    if fields == {"eventLoop": "uvloop", "httpParser": "httptools"}:
        logs.info("serving", **fields)
    else:
        logs.warning("serving on the slow stack: install uvloop and httptools", **fields)
