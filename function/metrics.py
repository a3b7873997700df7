"""Prometheus metrics, named in the same words as the log lines.

Label children are looked up once and kept: `labels()` takes a lock and builds a tuple on
every call, which the profile showed on every request.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from .outcomes import Outcome

REQUESTS = Counter(
    "orders_http_requests", "Requests answered, by route, method and status",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "orders_request_duration_seconds", "Time to answer, by route", ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTCOMES = Counter(
    "orders_idempotency_outcomes",
    "Order requests by outcome: created, replayed-redis, replayed-postgres, waited, "
    "conflict (409 after waiting), mismatch (same key, different body)",
    ["outcome"],
)
ORDERS_CREATED = Counter("orders_created", "Orders written to PostgreSQL")
DEGRADED = Counter(
    "orders_degraded_operations", "Order requests served on PostgreSQL alone because Redis was down"
)

_requests: dict[tuple[str, str, int], Counter] = {}
_latency: dict[str, Histogram] = {}
_outcomes = {outcome: OUTCOMES.labels(outcome.value) for outcome in Outcome}


def observe_request(
    route: str, method: str, status: int, seconds: float, outcome: Outcome | None, degraded: bool
) -> None:
    requests = _requests.get((route, method, status))
    if requests is None:
        requests = _requests[(route, method, status)] = REQUESTS.labels(route, method, str(status))
    requests.inc()
    latency = _latency.get(route)
    if latency is None:
        latency = _latency[route] = LATENCY.labels(route)
    latency.observe(seconds)
    if outcome is not None:
        _outcomes[outcome].inc()
        if outcome is Outcome.CREATED:
            ORDERS_CREATED.inc()
    if degraded:
        DEGRADED.inc()


def exposition() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
