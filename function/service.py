"""The parts of a running copy, wired once per worker process on first use.

functions-framework imports the function in gunicorn's master and then forks workers,
so nothing here connects at import time: each worker builds its own pool and Redis
client, on the event loop that will use them (an asyncio client belongs to one loop),
and its own tracer with its exporter thread (a thread does not survive a fork).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

from . import migrate, startup
from .claims import ClaimStore
from .database import Database
from .idempotency import IdempotencyEngine
from .orders import INSERT_UNLESS_KEY_EXISTS, OrderStore
from .settings import Settings
from .tracing import Tracing

if TYPE_CHECKING:
    from .relay import Relay


@dataclass(frozen=True)
class Service:
    settings: Settings
    claims: ClaimStore
    orders: OrderStore
    engine: IdempotencyEngine
    database: Database
    tracing: Tracing | None  # None: tracing off, and nothing of OpenTelemetry loaded
    relay: Relay | None = None  # None: K_SINK unset, no events recorded or published


_built: dict[int, Service] = {}


def for_this_process(settings: Settings) -> Service:
    """Called on the event loop's thread only, so building needs no lock."""
    service = _built.get(os.getpid())
    if service is None:
        _built.clear()  # an inherited parent's entry is not ours to use
        service = _built[os.getpid()] = _build(settings)
        startup.report_serving_stack()
    return service


def _build(settings: Settings) -> Service:
    # Normally the schema was applied before the server started (startup.py); if
    # PostgreSQL was not reachable then, it is applied before this worker's first query.
    pending = settings.auto_migrate and not startup.schema_checked()
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
    if settings.k_sink is None:
        orders, relay = OrderStore(database, tracing), None
    else:
        orders, relay = _announcing_orders(settings, settings.k_sink, database, tracing)
    engine = IdempotencyEngine(settings, claims, orders, tracing)
    return Service(settings, claims, orders, engine, database, tracing, relay)


def _announcing_orders(
    settings: Settings, sink: str, database: Database, tracing: Tracing | None,
) -> tuple[OrderStore, Relay]:
    """Orders whose INSERT records their event, published after each commit. Imported
    only here: with K_SINK unset a copy loads no HTTP client."""
    from .outbox import POST_TIMEOUT_SECONDS, OutboxStore, recording_events
    from .publisher import Publisher
    from .relay import Relay

    orders = OrderStore(database, tracing, insert_sql=recording_events(INSERT_UNLESS_KEY_EXISTS))
    relay = Relay(
        OutboxStore(database, settings.outbox_retry_seconds),
        Publisher(sink, settings.k_ce_overrides, POST_TIMEOUT_SECONDS),
        settings.outbox_retry_seconds, tracing,
    )
    orders.insert_or_get = relay.announcing(orders.insert_or_get)  # type: ignore[method-assign, assignment]
    return orders, relay


def worker_lifespan(settings: Settings) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """What each worker runs as it starts serving and as it stops: with K_SINK set, the
    outbox sweep starts at once (publishing what any copy left pending, with no request
    needed) and, on shutdown, the publishes under way finish."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        relay = for_this_process(settings).relay if settings.k_sink is not None else None
        if relay is not None:
            relay.start()
        yield
        if relay is not None:
            await relay.stop()

    return lifespan
