"""Prometheus metrics, named in the same words as the log lines."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

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


def exposition() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
