"""PostgreSQL as the ground truth: insert-or-get under the (profile, key) constraint,
get, and list. Every statement is parameterised."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .database import Database, Session
from .inputs import OrderRequest

if TYPE_CHECKING:
    from .tracing import Tracing

# created_at is formatted by PostgreSQL as the API shows it (RFC 3339, UTC, microseconds):
# pg8000 would parse it with strptime and we would format it back, on every create.
_COLUMNS = (
    "order_id::text, order_number, profile_id, product_id, product_quantity,"
    """ to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), fingerprint"""
)

INSERT_UNLESS_KEY_EXISTS = f"""
INSERT INTO orders (profile_id, idempotency_key, fingerprint, product_id, product_quantity)
VALUES (:profile, :key, :fingerprint, :product_id, :quantity)
ON CONFLICT (profile_id, idempotency_key) DO NOTHING
RETURNING {_COLUMNS}
"""
# Run after a conflict. A separate statement on purpose: within the INSERT's own
# snapshot a row committed by a concurrent copy would be invisible.
SELECT_BY_KEY = f"SELECT {_COLUMNS} FROM orders WHERE profile_id = :profile AND idempotency_key = :key"
SELECT_BY_ID = f"SELECT {_COLUMNS} FROM orders WHERE order_id = CAST(:order_id AS uuid) AND profile_id = :profile"
SELECT_NEWEST = f"""SELECT {_COLUMNS} FROM orders WHERE profile_id = :profile
ORDER BY order_number DESC LIMIT :limit"""
SELECT_NEWEST_BELOW = f"""SELECT {_COLUMNS} FROM orders WHERE profile_id = :profile
AND order_number < :below ORDER BY order_number DESC LIMIT :limit"""


@dataclass(frozen=True)
class Order:
    order_id: str
    order_number: int
    profile_id: str
    product_id: str | None
    product_quantity: int
    created_at: str  # RFC 3339 UTC, e.g. 2026-12-01T19:33:15.309340Z
    fingerprint: str

    def document(self) -> dict[str, Any]:
        """The order as clients see it (the fingerprint stays inside)."""
        return {
            "orderId": self.order_id,
            "profileId": self.profile_id,
            "orderNumber": self.order_number,
            "productId": self.product_id,
            "productQuantity": self.product_quantity,
            "createdAt": self.created_at,
        }

    def body(self) -> bytes:
        """The answer's bytes; a replay from Redis or PostgreSQL repeats them exactly."""
        return json.dumps(self.document(), separators=(",", ":")).encode()


@dataclass(frozen=True)
class Page:
    orders: list[Order]
    next_below: int | None  # order number to continue below, None on the last page


class OrderStore:
    """Each method is one unit of work on one connection (one transaction when pooled)."""

    def __init__(
        self, database: Database, tracing: Tracing | None = None, *, insert_sql: str = INSERT_UNLESS_KEY_EXISTS,
    ) -> None:
        self._pool = database
        self._insert_sql = insert_sql  # with K_SINK set, the same INSERT recording its event (outbox.py)
        if tracing is not None:  # chosen once: tracing off, a call pays nothing for it
            self.insert_or_get = tracing.postgres_call("insert-or-get", "INSERT", self.insert_or_get)  # type: ignore[method-assign]
            self.find = tracing.postgres_call("find", "SELECT", self.find)  # type: ignore[method-assign]
            self.get = tracing.postgres_call("get", "SELECT", self.get)  # type: ignore[method-assign]
            self.newest = tracing.postgres_call("list", "SELECT", self.newest)  # type: ignore[method-assign]

    async def insert_or_get(
        self, profile: str, key: str | None, fingerprint: str, request: OrderRequest
    ) -> tuple[Order, bool]:
        """The order for (profile, key), and whether this call created it."""

        def work(connection: Session) -> tuple[Order, bool]:
            rows = connection.run(
                self._insert_sql, profile=profile, key=key, fingerprint=fingerprint,
                product_id=request.product_id, quantity=request.product_quantity,
            )
            if rows:
                return _order(rows[0]), True
            return _order(connection.run(SELECT_BY_KEY, profile=profile, key=key)[0]), False

        return await self._pool.run(work)

    async def find(self, profile: str, key: str) -> Order | None:
        """The order stored for (profile, key), if any: what any claim in Redis stands for."""
        rows = await self._pool.run(lambda c: c.run(SELECT_BY_KEY, profile=profile, key=key))
        return _order(rows[0]) if rows else None

    async def get(self, profile: str, order_id: str) -> Order | None:
        rows = await self._pool.run(lambda c: c.run(SELECT_BY_ID, order_id=order_id, profile=profile))
        return _order(rows[0]) if rows else None

    async def newest(self, profile: str, limit: int, below: int | None) -> Page:
        def work(connection: Session) -> list[list[Any]]:
            if below is None:
                return connection.run(SELECT_NEWEST, profile=profile, limit=limit + 1)
            return connection.run(SELECT_NEWEST_BELOW, profile=profile, below=below, limit=limit + 1)

        orders = [_order(row) for row in await self._pool.run(work)]
        more = len(orders) > limit
        return Page(orders[:limit], orders[limit - 1].order_number if more else None)

    async def ping(self) -> None:
        await self._pool.run(lambda c: c.run("SELECT 1"))


def _order(row: list[Any]) -> Order:
    return Order(*row)
