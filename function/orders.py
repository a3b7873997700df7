"""PostgreSQL as the ground truth: insert-or-get under the (profile, key) uniqueness,
get, and list. Every statement is parameterised.

(profile, key) is unique through `orders_key_digest`, a unique index on a 16-byte digest
of the two (postgres/migrations/contract/0004), built once no copy of the previous version
runs; until then the old constraint on the two columns holds it. Every read for a key
compares profile and key themselves, so a digest shared by two keys never answers with the
other key's order."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .batching import InsertBatcher
from .database import Database, Session
from .problems import InvalidIdempotencyKey
from .tracing import postgres_span
from .validation import OrderRequest

if TYPE_CHECKING:
    from .tracing import Tracing

# The columns an Order is read from (`order_from_row`), for any statement that reads
# orders, ours or the outbox's; the first, the id, keeps the name ORDER_ID. created_at is
# formatted by PostgreSQL as the API shows it (RFC 3339, UTC, microseconds): pg8000
# would parse it with strptime and we would format it back, on every create.
ORDER_ID = "order_id"
ORDER_COLUMNS = (
    "order_id::text, order_number, profile_id, product_id, product_quantity,"
    """ to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), fingerprint"""
)


# The expression of the unique index orders_key_digest (contract/0004_key_digest_index.sql), and the
# same for parameters: the digest is computed by PostgreSQL only, from the text it stores.
# The profile cannot hold a `/`, so no two (profile, key) pairs make the same text.
KEY_DIGEST_SQL = "CAST(md5(profile_id || '/' || idempotency_key) AS uuid)"
_DIGEST_OF_PARAMETERS = "CAST(md5(CAST(:profile AS text) || '/' || CAST(:key AS text)) AS uuid)"


@functools.lru_cache(maxsize=None)
def insert_unless_keys_exist(rows: int) -> str:
    """One INSERT for `rows` new orders (group commit); a row whose key exists is skipped.

    RETURNING adds the key, so each row finds its request. A plain INSERT ... RETURNING,
    so a CTE (`WITH new AS (...) ... FROM new`) can wrap it. One text per batch size:
    prepared once per connection and size. The order id is the column's default (UUIDv7).

    ON CONFLICT names no index on purpose: every unique index is then an arbiter, the
    digest index and, while the previous version may run, its constraint on (profile, key)
    as well. Naming one would make a race on the other an error (23505) instead of a
    skipped row. A conflict on the order id (74 random bits within one millisecond) would
    be skipped as well, and found below as a key without an order."""
    values = ", ".join(
        f"(:profile{n}, :key{n}, :fingerprint{n}, :product_id{n}, :quantity{n})" for n in range(rows)
    )
    return f"""
INSERT INTO orders (profile_id, idempotency_key, fingerprint, product_id, product_quantity)
VALUES {values}
ON CONFLICT DO NOTHING
RETURNING {ORDER_COLUMNS}, idempotency_key
"""


# The orders stored for the batch's conflicting keys (pairs: profiles[i], keys[i]), in one
# read: per pair the lookup of SELECT_BY_KEY (the digest index, or before it is built the
# old constraint's), comparing profile and key themselves.
SELECT_BY_KEYS = f"""SELECT {ORDER_COLUMNS}, idempotency_key
FROM unnest(CAST(:profiles AS text[]), CAST(:keys AS text[])) AS asked (profile, key)
JOIN orders ON {KEY_DIGEST_SQL} = CAST(md5(asked.profile || '/' || asked.key) AS uuid)
AND profile_id = asked.profile AND idempotency_key = asked.key"""


# What a claim in Redis stands for (`find`), read by a duplicate that waited.
SELECT_BY_KEY = f"""SELECT {ORDER_COLUMNS} FROM orders WHERE {KEY_DIGEST_SQL} = {_DIGEST_OF_PARAMETERS}
AND profile_id = :profile AND idempotency_key = :key"""
SELECT_BY_ID = f"SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = CAST(:order_id AS uuid) AND profile_id = :profile"
SELECT_NEWEST = f"""SELECT {ORDER_COLUMNS} FROM orders WHERE profile_id = :profile
ORDER BY order_number DESC LIMIT :limit"""
SELECT_NEWEST_BELOW = f"""SELECT {ORDER_COLUMNS} FROM orders WHERE profile_id = :profile
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


@dataclass(frozen=True)
class NewOrder:
    """One create's row, waiting for its batch."""

    profile: str
    key: str | None  # None: IDEMPOTENCY_KEY_REQUIRED=false and no key sent; never deduplicated
    fingerprint: str
    request: OrderRequest


class OrderStore:
    """Each method is one unit of work on one connection (one transaction when pooled);
    creates share theirs with the creates queued beside them (batching.py)."""

    tracing: Tracing | None  # read by the spans below (tracing.Traced)

    def __init__(
        self, database: Database, tracing: Tracing | None = None, *, batch_max: int = 1, batches_in_flight: int = 1,
        insert_sql: Callable[[int], str] = insert_unless_keys_exist, announce: Callable[[Order], None] | None = None,
    ) -> None:
        self._pool = database
        self.tracing = tracing  # None: tracing off, and the spans below cost one attribute read
        # With K_SINK set: the INSERT that also records each order's event (outbox.py), and
        # what publishes a created order once its statement has committed (events_out/relay.py).
        self._batcher: InsertBatcher[NewOrder, tuple[Order, bool]] = InsertBatcher(
            database, functools.partial(insert_or_get_all, insert_sql=insert_sql),
            max_size=batch_max, max_in_flight=batches_in_flight)
        self._announce = announce

    async def insert_or_get(
        self, profile: str, key: str | None, fingerprint: str, request: OrderRequest
    ) -> tuple[Order, bool]:
        """The order for (profile, key), and whether this call created it. A created
        order is announced here, outside the INSERT's span: its publish is the request's
        child, not the statement's."""
        order, created = await self._insert_or_get(NewOrder(profile, key, fingerprint, request))
        if created and self._announce is not None:
            self._announce(order)
        return order, created

    @postgres_span("insert-or-get", "INSERT")
    async def _insert_or_get(self, new: NewOrder) -> tuple[Order, bool]:
        return await self._batcher.submit(new)

    @postgres_span("find", "SELECT")
    async def find(self, profile: str, key: str) -> Order | None:
        """The order stored for (profile, key), if any: what any claim in Redis stands for."""
        rows = await self._pool.run(lambda c: c.run(SELECT_BY_KEY, profile=profile, key=key))
        return order_from_row(rows[0]) if rows else None

    @postgres_span("get", "SELECT")
    async def get(self, profile: str, order_id: str) -> Order | None:
        rows = await self._pool.run(lambda c: c.run(SELECT_BY_ID, order_id=order_id, profile=profile))
        return order_from_row(rows[0]) if rows else None

    @postgres_span("list", "SELECT")
    async def newest(self, profile: str, limit: int, below: int | None) -> Page:
        def work(connection: Session) -> list[list[Any]]:
            if below is None:
                return connection.run(SELECT_NEWEST, profile=profile, limit=limit + 1)
            return connection.run(SELECT_NEWEST_BELOW, profile=profile, below=below, limit=limit + 1)

        orders = [order_from_row(row) for row in await self._pool.run(work)]
        more = len(orders) > limit
        return Page(orders[:limit], orders[limit - 1].order_number if more else None)

    async def ping(self) -> None:
        await self._pool.run(lambda c: c.run("SELECT 1"))


def insert_or_get_all(
    connection: Session, wanted: Sequence[NewOrder], *, insert_sql: Callable[[int], str] = insert_unless_keys_exist,
) -> list[tuple[Order, bool]]:
    """Each wanted order and whether it was created here, in `wanted`'s order.

    One INSERT for the batch, then one read of the keys that already existed. A key twice
    in one batch (duplicates meet here when Redis is down) is one row: the first request
    for it creates the order, the others get it as a replay. Rows go in (profile, key)
    order, so two batches that share keys (on two copies) lock them in the same order and
    cannot deadlock."""
    keyed: dict[tuple[str, str], NewOrder] = {}
    unkeyed: list[NewOrder] = []
    for new in wanted:
        if new.key is None:
            unkeyed.append(new)
        else:
            keyed.setdefault((new.profile, new.key), new)
    rows = [keyed[pair] for pair in sorted(keyed)] + unkeyed
    params: dict[str, Any] = {}
    for n, new in enumerate(rows):
        params[f"profile{n}"], params[f"key{n}"], params[f"fingerprint{n}"] = new.profile, new.key, new.fingerprint
        params[f"product_id{n}"], params[f"quantity{n}"] = new.request.product_id, new.request.product_quantity
    created: dict[tuple[str, str], Order] = {}
    created_unkeyed: dict[tuple[str, str], list[Order]] = {}  # by (profile, fingerprint)
    for row in connection.run(insert_sql(len(rows)), **params):
        order, key = order_from_row(row[:-1]), row[-1]
        if key is None:
            created_unkeyed.setdefault((order.profile_id, order.fingerprint), []).append(order)
        else:
            created[(order.profile_id, key)] = order
    # A separate statement on purpose: within the INSERT's own snapshot a row committed
    # by a concurrent copy would be invisible.
    existed = [pair for pair in keyed if pair not in created]
    found: dict[tuple[str, str], Order] = {}
    if existed:
        rows_found = connection.run(
            SELECT_BY_KEYS, profiles=[profile for profile, _ in existed], keys=[key for _, key in existed])
        found = {(row[2], row[-1]): order_from_row(row[:-1]) for row in rows_found}
        unstorable = [pair for pair in existed if pair not in found]
        if unstorable:  # its digest is another key's (or its id another order's): never that order
            raise InvalidIdempotencyKey(
                "this idempotency key cannot be stored (its digest equals another key's); send another key")
    answers: list[tuple[Order, bool]] = []
    for new in wanted:
        if new.key is None:  # identical requests without a key are interchangeable
            answers.append((created_unkeyed[(new.profile, new.fingerprint)].pop(), True))
            continue
        pair = (new.profile, new.key)
        if pair in created:  # the first request for a key made it, if anyone did
            found[pair] = created.pop(pair)
            answers.append((found[pair], True))
        else:
            answers.append((found[pair], False))
    return answers


def order_from_row(row: Sequence[Any]) -> Order:
    """The Order a row of ORDER_COLUMNS holds."""
    return Order(*row)
