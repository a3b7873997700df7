"""After the traffic, PostgreSQL is held to what the clients were told (loadgen.audit):
every acknowledged order stored, one per key, and no order nobody heard of beyond those
cut by the kill; then the cut keys are retried once their lease has run out."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import requests

from devserver.stack import LocalStack
from loadgen.audit import Audit as StoredAudit
from loadgen.audit import OrderKey, audit as audit_postgres

from .ledger import Ledger

SOAK_PROFILES = "soak-%"


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
    result = Audit(problems=list(ledger.failures), acknowledged=len(ledger.told))
    told = ledger.told.orders()
    before = _audited(stack, told)
    result.problems += before.problems()
    result.stored = len(before.stored)
    cut = {order: request for order, request in ledger.cut.items() if order not in ledger.told}
    result.cut = len(cut)
    result.made_by_cut_requests = len(before.unacknowledged & set(cut))
    for order in sorted(before.unacknowledged - set(cut)):
        result.problems.append(f"{order}: in PostgreSQL, but no client was told and none was cut")
    stored = {order: orders[0].order_id for order, orders in before.stored.items()}
    _retry_cut_keys(cut, stored, urls, lease_seconds, result)
    after = _audited(stack, told)
    if set(after.stored) != set(told) | set(cut):
        result.problems.append("after the retries, PostgreSQL's keys are not exactly the keys clients sent")
    result.problems += [p for p in after.problems() if p not in result.problems]
    return result


def _audited(stack: LocalStack, told: dict[OrderKey, str]) -> StoredAudit:
    with stack.connect() as connection:
        return audit_postgres(connection.native, profile_pattern=SOAK_PROFILES, acknowledged=told)


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
