"""Counting the orders that exist after a run: the ground truth the answers are checked
against. From PostgreSQL (the one auditor, loadgen.audit) when the demo started it, else
through `GET /orders`.

Both give, per key, the orders made for it; the run's profile is new, so every order
of that profile is the run's own and nothing else is counted.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import pg8000.native
import requests

from loadgen.audit import audit

PAGE_SIZE = 500  # the contract's largest page: fewest round trips


@dataclass(frozen=True)
class StoredOrder:
    order_id: str
    key_index: int | None  # None: an order of this profile that no key of the run names
    product_quantity: int


@dataclass(frozen=True)
class Census:
    source: str  # "PostgreSQL" or "GET /orders"
    orders: list[StoredOrder]

    def by_key(self) -> dict[int | None, list[StoredOrder]]:
        grouped: dict[int | None, list[StoredOrder]] = defaultdict(list)
        for order in self.orders:
            grouped[order.key_index].append(order)
        return grouped


def from_postgres(connection: pg8000.native.Connection, profile: str, key_names: list[str]) -> Census:
    index_of = {name: index for index, name in enumerate(key_names)}
    stored = audit(connection, profile_pattern=profile, acknowledged={}).stored
    return Census("PostgreSQL", [
        StoredOrder(order.order_id, index_of.get(key), order.product_quantity)
        for (_, key), orders in stored.items() for order in orders
    ])


def from_api(base_url: str, profile: str, key_count: int, headers: dict[str, str] | None = None) -> Census:
    """Every page of the profile's orders; an order's productId (`k<index>`) names its key."""
    orders: list[StoredOrder] = []
    cursor: str | None = None
    with requests.Session() as session:
        while True:
            params = {"profileId": profile, "limit": str(PAGE_SIZE)}
            if cursor is not None:
                params["cursor"] = cursor
            response = session.get(base_url + "/orders", params=params, headers=headers, timeout=30)
            response.raise_for_status()
            page = response.json()
            for document in page["orders"]:
                orders.append(StoredOrder(
                    document["orderId"], _key_index(document.get("productId"), key_count),
                    document["productQuantity"],
                ))
            cursor = page.get("nextCursor")
            if cursor is None:
                return Census("GET /orders", orders)


def _key_index(product_id: str | None, key_count: int) -> int | None:
    if product_id is None or not product_id.startswith("k") or not product_id[1:].isdigit():
        return None
    index = int(product_id[1:])
    return index if index < key_count else None
