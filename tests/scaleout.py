"""Load and audits for the scale-out tests, in one place.

The load is what already exists (tests/storm.py's duplicate storm, the retrying
KeyedLoad clients of test_hanging_dependencies.py, test_concurrency.py's audit); this
module adds only what those lack: which orders were acknowledged, whether PostgreSQL
holds exactly those, and answers that must never appear (5xx). When the load moves to a
shared harness, this file is the one to change.
"""

from __future__ import annotations

import time
from typing import Callable

import requests

from conftest import Client, Database
from storm import STORM_ORDER, StormResult, storm
from test_concurrency import assert_one_order_per_key
from test_hanging_dependencies import KeyedLoad

__all__ = [
    "KeyedLoad", "StormResult", "acknowledged", "assert_acknowledged_orders_stored_once",
    "assert_one_order_per_key", "eventually", "outcome_total", "replay_storm_key",
    "server_errors", "storm", "wait_for_orders",
]


def acknowledged(result: StormResult) -> dict[str, str]:
    """{key: orderId} of every key some client got a 201 for."""
    orders = {}
    for key, responses in result.answers.items():
        created = [r for r in responses if r.status_code == 201]
        if created:
            orders[key] = created[0].json()["orderId"]
    return orders


def server_errors(result: StormResult) -> list[str]:
    """Every 5xx of a storm, as "key: status body" (a connection error shows up here)."""
    return [f"{key}: {r.status_code} {r.text[:200]}"
            for key, responses in result.answers.items() for r in responses if r.status_code >= 500]


def assert_acknowledged_orders_stored_once(acknowledged: dict[str, str], db: Database, profile: str) -> None:
    """Every acknowledged key has exactly one row, and it is the acknowledged order."""
    rows = db.execute(
        "SELECT idempotency_key, order_id::text, count(*) OVER (PARTITION BY idempotency_key) "
        "FROM orders WHERE profile_id = :p", p=profile)
    duplicated = sorted({key for key, _, count in rows if count != 1})
    assert not duplicated, f"keys with more than one order: {duplicated[:10]}"
    stored = {key: order_id for key, order_id, _ in rows}
    missing = sorted(key for key in acknowledged if key not in stored)
    assert not missing, f"acknowledged but not in PostgreSQL: {missing[:10]}"
    different = sorted(key for key, order_id in acknowledged.items() if stored[key] != order_id)
    assert not different, f"acknowledged another order than PostgreSQL holds: {different[:10]}"


def wait_for_orders(db: Database, count: int, profile: str, timeout_seconds: float = 60.0) -> int:
    """Until PostgreSQL holds at least `count` orders of `profile` (a load is under way)."""
    eventually(lambda: db.order_count(profile) >= count, f"{count} orders of {profile}", timeout_seconds)
    return db.order_count(profile)


def outcome_total(urls: list[str], outcome: str) -> float:
    """orders_idempotency_outcomes_total{outcome} summed over copies."""
    return sum(Client(url).outcome_count(outcome) for url in urls)


def eventually(condition: Callable[[], bool], what: str, timeout_seconds: float = 30.0) -> None:
    """For recoveries the contract promises without a deadline ("recovers by itself"):
    a generous bound, so only a recovery that never comes fails the test."""
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_seconds} s: {what}")
        time.sleep(0.1)


def replay_storm_key(url: str, key: str, profile: str = "storm") -> requests.Response:
    """The storm's request for `key` once more, as a client retrying it later."""
    return Client(url).create(STORM_ORDER, key=key, profile=profile)
