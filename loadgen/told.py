"""What clients were told: the first 201 of each key (its order id and body), kept one way
by every load (keyed, the storm, the soak) and handed to the auditor (audit.py)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from .audit import OrderKey


@dataclass(frozen=True)
class Acknowledged:
    order_id: str
    answer: bytes  # the 201 body; every later answer for the key must repeat it
    request: Any = None  # the body sent, where the load replays it (the soak)


class Told:
    """Thread-safe: many client threads acknowledge at once."""

    def __init__(self) -> None:
        self._first: dict[OrderKey, Acknowledged] = {}
        self._lock = threading.Lock()

    def acknowledge(self, order: OrderKey, order_id: str, answer: bytes, request: Any = None) -> bool:
        """Records the key's first 201; False if this one named another order or body."""
        with self._lock:
            first = self._first.setdefault(order, Acknowledged(order_id, answer, request))
        return first.order_id == order_id and first.answer == answer

    def first(self, order: OrderKey) -> Acknowledged:
        with self._lock:
            return self._first[order]

    def __contains__(self, order: object) -> bool:
        with self._lock:
            return order in self._first

    def __len__(self) -> int:
        with self._lock:
            return len(self._first)

    def orders(self) -> dict[OrderKey, str]:
        """(profile, key) -> the order id its first 201 named: what the auditor checks."""
        with self._lock:
            return {order: first.order_id for order, first in self._first.items()}

    def of_profile(self, profile: str) -> list[tuple[OrderKey, Acknowledged]]:
        with self._lock:
            return [(order, first) for order, first in self._first.items() if order[0] == profile]
