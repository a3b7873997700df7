"""The parts of a running copy, wired once per worker process on first use.

functions-framework imports the function in gunicorn's master and then forks workers,
so nothing here connects at import time: each worker builds its own pool and Redis
client, on the event loop that will use them (an asyncio client belongs to one loop),
and its own tracer with its exporter thread (a thread does not survive a fork).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

from . import logs, migrate
from .claims import ClaimStore
from .database import Database
from .idempotency import IdempotencyEngine
from .orders import OrderStore
from .settings import Settings
from .tracing import Tracing

if TYPE_CHECKING:
    from .events_out.relay import Relay


@dataclass(frozen=True)
class Service:
    settings: Settings
    claims: ClaimStore
    orders: OrderStore
    engine: IdempotencyEngine
    tracing: Tracing | None  # None: tracing off, and nothing of OpenTelemetry loaded
    relay: Relay | None = None  # None: K_SINK unset, no events recorded or published


_built: list[Service] = []  # this process's, once built; emptied in a forked child


def for_this_process(settings: Settings, *, schema_applied: bool = False) -> Service:
    """Called on the event loop's thread only, so building needs no lock. A forked
    child starts with none (an inherited parent's is not its to use): forgotten at the
    fork, not checked per request (os.getpid() is a system call every time)."""
    if _built:
        return _built[0]
    service = _build(settings, schema_applied)
    _built.append(service)
    _report_serving_stack()
    return service


os.register_at_fork(after_in_child=_built.clear)


def batches_in_flight(settings: Settings) -> int:
    """Create batches a worker runs at once. Group commit off: one create per connection,
    as many as the pool has. On: half the pool, rounded up. Two batches overlap (one
    commits while the next is sent), so a slow commit does not stall creates; fewer in
    flight make the queued creates batch more, and two made the most creates/s (figures:
    docs/group-commit.md, "Capacity model, re-derived"); the rest of the pool stays free
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
        keepalive=settings.keepalive,
        before_first_query=(
            (lambda connection: migrate.apply_migrations(connection, settings.migration_timeout_seconds))
            if pending else None
        ),
    )
    tracing = Tracing(settings.database) if settings.tracing else None
    claims = ClaimStore(settings.redis, timeout_seconds=settings.redis_timeout_seconds, tracing=tracing,
                        keepalive=settings.keepalive)
    in_flight = batches_in_flight(settings)
    if settings.k_sink is None:
        orders = OrderStore(database, tracing, batch_max=settings.database_batch_max, batches_in_flight=in_flight)
        relay = None
    else:
        orders, relay = _announcing_orders(settings, settings.k_sink, database, tracing, in_flight)
    engine = IdempotencyEngine(settings, claims, orders, tracing)
    return Service(settings, claims, orders, engine, tracing, relay)


def _announcing_orders(
    settings: Settings, sink: str, database: Database, tracing: Tracing | None, in_flight: int,
) -> tuple[OrderStore, Relay]:
    """Orders whose INSERT records their event, published after each commit. Imported
    only here: with K_SINK unset a copy loads no HTTP client."""
    from .events_out.outbox import POST_TIMEOUT_SECONDS, OutboxStore, recording_inserts
    from .events_out.publisher import Publisher
    from .events_out.relay import Relay

    relay = Relay(
        OutboxStore(database, settings.outbox_retry_seconds),
        Publisher(sink, settings.k_ce_overrides, POST_TIMEOUT_SECONDS, settings.keepalive),
        settings.outbox_retry_seconds, tracing,
    )
    orders = OrderStore(
        database, tracing, batch_max=settings.database_batch_max, batches_in_flight=in_flight,
        insert_sql=recording_inserts, announce=relay.announce,
    )
    return orders, relay


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


def worker_lifespan(settings: Settings, schema_applied: bool) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """What each worker runs as it starts serving and as it stops: with K_SINK set, the
    outbox sweep starts at once (publishing what any copy left pending, with no request
    needed) and, on shutdown, the publishes under way finish."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        relay = for_this_process(settings, schema_applied=schema_applied).relay if settings.k_sink is not None else None
        if relay is not None:
            relay.start()
        yield
        if relay is not None:
            await relay.stop()

    return lifespan
