"""After the traffic, PostgreSQL is held to what the clients were told: every acknowledged
order stored, one per key, and no order nobody heard of beyond those cut by the kill."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import requests

from demo.stack import LocalStack

from .ledger import Ledger, OrderKey

SOAK_ORDERS = "SELECT profile_id, idempotency_key, order_id::text FROM orders WHERE profile_id LIKE 'soak-%'"
KEYS_WITH_TWO_ORDERS = """SELECT profile_id, idempotency_key, count(*) FROM orders
WHERE profile_id LIKE 'soak-%' GROUP BY 1, 2 HAVING count(*) > 1"""


@dataclass
class Audit:
    problems: list[str] = field(default_factory=list)
    acknowledged: int = 0
    stored: int = 0
    cut: int = 0  # creates whose connection died with the killed copy
    made_by_cut_requests: int = 0  # ... of which PostgreSQL holds an order nobody was told of
    recovered: int = 0  # cut keys answered by a retry once the lease ran out

    @property
    def passed(self) -> bool:
        return not self.problems


def audit(stack: LocalStack, ledger: Ledger, urls: list[str], lease_seconds: float) -> Audit:
    result = Audit(problems=list(ledger.failures), acknowledged=len(ledger.acknowledged))
    stored = _stored(stack, result)
    result.stored = len(stored)
    for order, first in ledger.acknowledged.items():
        if order not in stored:
            result.problems.append(f"{order}: acknowledged with 201 but not in PostgreSQL")
        elif stored[order] != first.order_id:
            result.problems.append(f"{order}: acknowledged {first.order_id}, PostgreSQL holds {stored[order]}")
    cut = {order: request for order, request in ledger.cut.items() if order not in ledger.acknowledged}
    result.cut = len(cut)
    unheard_of = set(stored) - set(ledger.acknowledged)
    result.made_by_cut_requests = len(unheard_of & set(cut))
    for order in sorted(unheard_of - set(cut)):
        result.problems.append(f"{order}: in PostgreSQL, but no client was told and none was cut")
    _retry_cut_keys(cut, stored, urls, lease_seconds, result)
    after = _stored(stack, result)
    if set(after) != set(ledger.acknowledged) | set(cut):
        result.problems.append("after the retries, PostgreSQL's keys are not exactly the keys clients sent")
    return result


def _retry_cut_keys(
    cut: dict[OrderKey, dict[str, Any]], stored: dict[OrderKey, str], urls: list[str],
    lease_seconds: float, result: Audit,
) -> None:
    """A claim the killed copy held blocks its key for the lease at most; then a retry gets
    the order the cut request made, or makes the one it did not."""
    time.sleep(lease_seconds + 0.5)
    session = requests.Session()
    for n, ((profile, key), request) in enumerate(sorted(cut.items())):
        response = session.post(
            urls[n % len(urls)] + "/orders", json=request, timeout=30,
            headers={"X-Profile-Id": profile, "Idempotency-Key": key},
        )
        if response.status_code != 201:
            result.problems.append(f"{(profile, key)}: retry after the lease answered {response.status_code}")
        elif (profile, key) in stored and response.json()["orderId"] != stored[(profile, key)]:
            result.problems.append(f"{(profile, key)}: the retry answered another order than the stored one")
        else:
            result.recovered += 1


def _stored(stack: LocalStack, result: Audit) -> dict[OrderKey, str]:
    with stack.connect() as connection:
        for profile, key, count in connection.native.run(KEYS_WITH_TWO_ORDERS):
            result.problems.append(f"{(profile, key)}: {count} orders for one key")
        return {(profile, key): order_id for profile, key, order_id in connection.native.run(SOAK_ORDERS)}
