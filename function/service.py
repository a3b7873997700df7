"""The parts of a running copy, wired once per process on first use.

functions-framework imports the function in gunicorn's master and then forks workers,
so nothing here connects at import time: each worker builds its own pool and client.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from .claims import ClaimStore
from .database import ConnectionPool
from .idempotency import IdempotencyEngine
from .migrate import apply_migrations
from .orders import OrderStore
from .settings import Settings


@dataclass(frozen=True)
class Service:
    settings: Settings
    claims: ClaimStore
    orders: OrderStore
    engine: IdempotencyEngine


_lock = threading.Lock()
_built: dict[int, Service] = {}


def for_this_process(settings: Settings) -> Service:
    pid = os.getpid()
    service = _built.get(pid)
    if service is None:
        with _lock:
            service = _built.get(pid) or _build(settings)
            _built.clear()  # an inherited parent's entry is not ours to use
            _built[pid] = service
    return service


def _build(settings: Settings) -> Service:
    pool = ConnectionPool(
        settings.database_url,
        size=settings.database_pool_size,
        connect_timeout_seconds=settings.database_connect_timeout_seconds,
        statement_timeout_seconds=settings.database_statement_timeout_seconds,
        # The schema is checked (and applied if missing) before this copy's first query.
        on_first_connection=apply_migrations if settings.auto_migrate else None,
    )
    claims = ClaimStore(settings.redis_url, timeout_seconds=settings.redis_timeout_seconds)
    orders = OrderStore(pool)
    return Service(settings, claims, orders, IdempotencyEngine(settings, claims, orders))
