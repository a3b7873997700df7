"""Load and audits for the scale-out tests, in the words those tests use, over the shared
harness: loadgen.storm's duplicate storm, loadgen.keyed's retrying clients and
loadgen.audit's one-order-per-key audit. This adds only what the scale-out tests ask of
them: which orders were acknowledged, answers that must never appear (5xx), and a replay
of a storm key as a client retrying it later."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable

import requests

from devserver.waiting import NotReady, wait_until
from loadgen.audit import audit
from loadgen.keyed import KeyedLoad
from loadgen.storm import LoadShape, Result, Run, fire
from support import Client, Database
from support import assert_one_order_per_key as assert_run_one_order_per_key

__all__ = [
    "KeyedLoad", "StormResult", "acknowledged", "assert_acknowledged_orders_stored_once",
    "assert_one_order_per_key", "eventually", "outcome_total", "replay_storm_key",
    "server_errors", "storm", "wait_for_orders",
]

STORM_PROFILE = "storm"
# The body of every storm request, so a later replay can send the same one.
STORM_ORDER: dict[str, Any] = {"productId": "sku-storm", "productQuantity": 1}


@dataclass(frozen=True)
class StormResult:
    run: Run

    @property
    def answers(self) -> dict[str, list[Result]]:
        """key -> what each of its requests ended with."""
        by_key: dict[str, list[Result]] = defaultdict(list)
        for result in self.run.results:
            by_key[self.run.key_names[result.planned.key_index]].append(result)
        return dict(by_key)

    @property
    def errors(self) -> list[str]:
        """Requests that got no answer at all (refused, reset, timed out), by key."""
        return [f"{key}: {r.final.error}" for key, results in self.answers.items()
                for r in results if r.final.status is None]

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = defaultdict(int)
        for result in self.run.results:
            if result.final.status is not None:
                counts[result.final.status] += 1
        return dict(counts)

    def served_by(self) -> set[str]:
        return {r.served_by or "" for r in self.run.results if r.final.status is not None}


def storm(urls: list[str], *, keys: int, duplicates: int, keys_at_once: int = 10) -> StormResult:
    """Every key `duplicates` times, `keys_at_once` keys' duplicates released together,
    each key's duplicates on different copies in turn."""
    shape = LoadShape(keys=keys, repeats=duplicates, clients=keys_at_once * duplicates,
                      product_id=STORM_ORDER["productId"])
    return StormResult(fire(shape, urls, profile=STORM_PROFILE))


def acknowledged(result: StormResult) -> dict[str, str]:
    """{key: orderId} of every key some client got a 201 for."""
    return {key: order_id for (_, key), order_id in result.run.acknowledged().items()}


def server_errors(result: StormResult) -> list[str]:
    """Every 5xx of a storm, as "key: status body"."""
    return [f"{key}: {r.final.status} {r.body[:200]!r}" for key, results in result.answers.items()
            for r in results if r.final.status is not None and r.final.status >= 500]


def assert_one_order_per_key(result: StormResult, db: Database) -> None:
    assert_run_one_order_per_key(result.run, db)


def assert_acknowledged_orders_stored_once(acknowledged: dict[str, str], db: Database, profile: str) -> None:
    """Every acknowledged key has exactly one row, and it is the acknowledged order."""
    connection = db.server.connect()
    try:
        audited = audit(connection, profile_pattern=profile,
                        acknowledged={(profile, key): order_id for key, order_id in acknowledged.items()})
    finally:
        connection.close()
    assert audited.problems() == []


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
    try:
        wait_until(condition, what=what, timeout_seconds=timeout_seconds, poll_seconds=0.1)
    except NotReady as never:
        raise AssertionError(str(never)) from None


def replay_storm_key(url: str, key: str, profile: str = STORM_PROFILE) -> requests.Response:
    """The storm's request for `key` once more, as a client retrying it later."""
    return Client(url).create(STORM_ORDER, key=key, profile=profile)
