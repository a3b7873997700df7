"""The one auditor: PostgreSQL, the ground truth, held to what clients were told.

A run acknowledges orders (a 201 naming an orderId for a key); afterwards every key of
the audited profiles must have at most one order, and every acknowledged order must be
that one. Orders nobody was told of are listed, not judged: a request cut by a killed
copy may have made one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import pg8000.native

OrderKey = tuple[str, str]  # (profile, idempotency key)

ORDERS_OF_PROFILES = """SELECT profile_id, idempotency_key, order_id::text, product_quantity FROM orders
WHERE profile_id LIKE :pattern ORDER BY order_number"""


@dataclass(frozen=True)
class StoredOrder:
    order_id: str
    product_quantity: int  # tells an altered duplicate's order from the original's


@dataclass(frozen=True)
class Audit:
    stored: dict[OrderKey, list[StoredOrder]]  # every order of the audited profiles, by key, oldest first
    acknowledged: dict[OrderKey, str]  # the order id each key was first answered with

    @property
    def keys_with_several_orders(self) -> dict[OrderKey, int]:
        return {key: len(ids) for key, ids in self.stored.items() if len(ids) > 1}

    @property
    def duplicates_created(self) -> int:
        return sum(len(ids) - 1 for ids in self.stored.values())

    @property
    def unacknowledged(self) -> set[OrderKey]:
        """Keys with an order in PostgreSQL that no client was told of."""
        return set(self.stored) - set(self.acknowledged)

    def problems(self) -> list[str]:
        found = [f"{key}: {count} orders for one key" for key, count in sorted(self.keys_with_several_orders.items())]
        for key, order_id in sorted(self.acknowledged.items()):
            stored = self.stored.get(key)
            if not stored:
                found.append(f"{key}: acknowledged with 201 ({order_id}) but not in PostgreSQL")
            elif order_id not in {order.order_id for order in stored}:
                found.append(f"{key}: acknowledged {order_id}, PostgreSQL holds {stored[0].order_id}")
        return found

    @property
    def passed(self) -> bool:
        return not self.problems()


def audit(
    connection: pg8000.native.Connection, *, profile_pattern: str, acknowledged: Mapping[OrderKey, str],
) -> Audit:
    """`profile_pattern` is a LIKE pattern: one run's profile, or `soak-%` for many."""
    stored: dict[OrderKey, list[StoredOrder]] = defaultdict(list)
    for profile, key, order_id, quantity in connection.run(ORDERS_OF_PROFILES, pattern=profile_pattern):
        stored[(profile, key)].append(StoredOrder(order_id, quantity))
    return Audit(dict(stored), dict(acknowledged))
