"""The outbox in PostgreSQL: order events recorded with their orders, taken by the
copies that publish them, and removed once delivered.

Recording is part of the order's own INSERT statement (`recording_events`), so an order
exists if and only if its event is recorded. Taking a row is a lease, not a lock held
across the POST: a claim moves `next_attempt_at` past the longest POST
(`LEASE_SECONDS`) in one short transaction, so no PostgreSQL connection waits on the
sink, and a copy that dies mid-POST gives its rows back when the lease ends.
`FOR UPDATE SKIP LOCKED` lets copies claim side by side without ever taking one row twice.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ..database import Database, Session
from ..orders import ORDER_COLUMNS, ORDER_ID, Order, insert_unless_keys_exist, order_from_row

# The sink must answer within this, or the attempt counts as failed ("timeout").
POST_TIMEOUT_SECONDS = 2.0
# How long a claimed row is left alone by every other copy: the POST's bound plus room
# for the claiming copy's loop to get to it (and to record the result) under load.
LEASE_SECONDS = POST_TIMEOUT_SECONDS + 3.0
# Rows one claim takes: posted together, so at most this many POSTs of a copy's sweep
# are in flight, and one claim holds a connection for milliseconds whatever the sink does.
BATCH_SIZE = 32
# The longest wait between attempts at one event, in retry periods: a poison event
# (one the sink always refuses) is tried every 12 x OUTBOX_RETRY_SECONDS, behind the rest.
BACKOFF_LIMIT_PERIODS = 12


def recording_events(insert_sql: str) -> str:
    """The order INSERT (`INSERT INTO orders ... RETURNING` orders.ORDER_COLUMNS, one row
    or many, the id named orders.ORDER_ID) made to record an outbox row for each order it
    inserts, in the same statement, returning the same rows.

    The rows are leased to the inserting copy from the start: it publishes them right
    after the commit, and a sweep takes them only if that has not worked by then.
    A conflicting (existing) key inserts nothing, so it records nothing either.
    """
    return f"""
WITH new AS ({insert_sql.strip()}),
recorded AS (
    INSERT INTO outbox (order_id, next_attempt_at)
    SELECT CAST(new.{ORDER_ID} AS uuid), now() + make_interval(secs => {LEASE_SECONDS}) FROM new
)
SELECT * FROM new
"""


@functools.lru_cache(maxsize=None)
def recording_inserts(rows: int) -> str:
    """The group commit's INSERT of `rows` orders (orders.insert_unless_keys_exist),
    recording each inserted order's event: one text per batch size, like the INSERT's."""
    return recording_events(insert_unless_keys_exist(rows))


# Due rows, oldest promise first, each leased again and its attempt counted.
_CLAIM = f"""
WITH due AS (
    SELECT order_id FROM outbox WHERE next_attempt_at <= now()
    ORDER BY next_attempt_at LIMIT :batch FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE outbox SET attempts = outbox.attempts + 1,
                      next_attempt_at = now() + make_interval(secs => {LEASE_SECONDS})
    FROM due WHERE outbox.order_id = due.order_id
    RETURNING outbox.order_id, outbox.attempts
)
SELECT {ORDER_COLUMNS} FROM claimed JOIN orders USING (order_id)
"""
_DELIVERED = "DELETE FROM outbox WHERE order_id = ANY(CAST(:ids AS uuid[]))"
# Backoff per event: one retry period after the first failure, doubling per attempt up
# to BACKOFF_LIMIT_PERIODS periods. A row that is due again sorts behind older ones.
_FAILED = f"""
UPDATE outbox SET next_attempt_at = now() + make_interval(
    secs => :period * least(power(2, least(attempts - 1, 16)), {BACKOFF_LIMIT_PERIODS}))
WHERE order_id = ANY(CAST(:ids AS uuid[]))
"""
_BACKLOG = """SELECT count(*), coalesce(extract(epoch FROM now() - min(recorded_at)), 0)::float8
FROM outbox"""


@dataclass(frozen=True)
class Backlog:
    pending: int
    oldest_seconds: float  # age of the oldest pending event; 0 when none is pending


class OutboxStore:
    """Each method is one unit of work on the pool (one short transaction)."""

    def __init__(self, database: Database, retry_seconds: float) -> None:
        self._pool = database
        self._retry_seconds = retry_seconds

    async def claim(self, batch: int = BATCH_SIZE) -> list[Order]:
        """Up to `batch` due events, leased to this copy: their orders as stored."""
        rows = await self._pool.run(lambda c: c.run(_CLAIM, batch=batch))
        return [order_from_row(row) for row in rows]

    async def delivered(self, order_ids: list[str]) -> None:
        if order_ids:
            await self._pool.run(lambda c: c.run(_DELIVERED, ids=order_ids))

    async def failed(self, order_ids: list[str]) -> None:
        """Leave them pending, due again after their backoff."""
        if order_ids:
            await self._pool.run(lambda c: c.run(_FAILED, ids=order_ids, period=self._retry_seconds))

    async def backlog(self) -> Backlog:
        def work(connection: Session) -> Backlog:
            count, oldest = connection.run(_BACKLOG)[0]
            return Backlog(int(count), float(oldest))

        return await self._pool.run(work)
