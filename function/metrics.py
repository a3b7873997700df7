"""Prometheus metrics, named in the same words as the log lines.

Label children are looked up once and kept: `labels()` takes a lock and builds a tuple on
every call, which the profile showed on every request.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from prometheus_client import Gauge

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


# --- Operations (issue 11): what an operator needs to tell a slow PostgreSQL, a sick
# Redis and a storm of duplicates apart. No label ever holds a key, profile or order id.
#
# Gauges say how to add up across gunicorn workers should prometheus-client's
# multiprocess mode be on (ignored otherwise): "livesum" counts only running workers.
DB_POOL_IN_USE = Gauge(
    "orders_db_pool_connections_in_use",
    "PostgreSQL connections lent to a request right now",
    multiprocess_mode="livesum",
)
DB_POOL_MAX = Gauge(
    "orders_db_pool_connections_max",
    "PostgreSQL connections the pool may open (DATABASE_POOL_SIZE); in_use / max is saturation",
    multiprocess_mode="livesum",
)
DB_POOL_WAITING = Gauge(
    "orders_db_pool_waiting_requests",
    "Requests queued for a PostgreSQL connection right now",
    multiprocess_mode="livesum",
)
DB_POOL_WAIT = Histogram(
    "orders_db_pool_wait_seconds",
    "Time a request waited for a PostgreSQL connection (zero when one was free)",
    # Fine below 10 ms, where a healthy pool lives; up to the connect timeout (3 s in
    # knative/configmap.yaml) plus slack, past which the request gives up with a 503.
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5),
)

REDIS_FAILURE_KINDS = ("timeout", "connection", "readonly", "unreadable-record", "other")
REDIS_FAILURES = Counter(
    "orders_redis_failures",
    "Redis calls that failed, by kind: timeout, connection (refused or dropped), readonly "
    "(a replica after failover), unreadable-record (a value we cannot parse), other",
    ["kind"],
)
CLAIMS_TAKEN_OVER = Counter(
    "orders_claims_taken_over",
    "In-flight claims taken over after their lease expired (their owner died or hung)",
)
WAIT_ENDINGS = ("done", "found-in-postgres", "conflict", "redis-down")
WAITS = Counter(
    "orders_waits",
    "Duplicates that waited for an in-flight original, by how the wait ended: done (the "
    "original finished), found-in-postgres, conflict (409 after IDEMPOTENCY_WAIT_SECONDS), "
    "redis-down",
    ["ended"],
)
# Every known label value exported from the start, at zero: a rate() over a series that
# appears only with its first failure misses that failure, and the dashboard shows gaps.
for _kind in REDIS_FAILURE_KINDS:
    REDIS_FAILURES.labels(_kind)
for _ended in WAIT_ENDINGS:
    WAITS.labels(_ended)
ORDER_LATENCY = Histogram(
    "orders_order_duration_seconds",
    "Time to answer an order request (HTTP or event), by outcome: a replay should answer "
    "in a millisecond, a created order in a few, a waited duplicate in up to "
    "IDEMPOTENCY_WAIT_SECONDS",
    ["outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
