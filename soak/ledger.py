"""What the soak's clients were told (loadgen.told), which of their requests were cut, and
every answer counted, kept so the audit can hold PostgreSQL to it."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from loadgen.audit import OrderKey
from loadgen.told import Acknowledged, Told


@dataclass
class Ledger:
    told: Told = field(default_factory=Told)  # each key's first 201, with the body sent
    # Creates whose connection died (a copy killed under them): they may or may not have
    # made an order, and the client never heard which.
    cut: dict[OrderKey, dict[str, Any]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)  # (operation, status)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def acknowledge(self, order: OrderKey, request: dict[str, Any], answer: bytes, order_id: str) -> None:
        if not self.told.acknowledge(order, order_id, answer, request):
            self.fail(f"{order}: two different 201 answers for one key")

    def note_cut(self, order: OrderKey, request: dict[str, Any]) -> None:
        with self._lock:
            if order not in self.told:
                self.cut[order] = request

    def count(self, operation: str, status: int) -> None:
        """status 0: no answer at all (connection refused or reset)."""
        with self._lock:
            self.answers[(operation, status)] += 1

    def fail(self, message: str) -> None:
        with self._lock:
            self.failures.append(message)

    def acknowledged_of(self, profile: str) -> list[tuple[OrderKey, Acknowledged]]:
        return self.told.of_profile(profile)
