"""Prometheus metrics, named in the same words as the log lines.

Label children are looked up once and kept: `labels()` takes a lock and builds a tuple on
every call, which the profile showed on every request.

With several gunicorn workers, `/metrics` must speak for the whole copy, whichever worker
answers the scrape: prometheus-client's multiprocess mode, where each worker writes its
values to files in one directory and a scrape adds them up. The directory is chosen in
startup.py before this module (and so prometheus_client) is first imported, in gunicorn's
master, so every forked worker inherits it.
"""

from __future__ import annotations

import glob
import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import Gauge, multiprocess

from .labels import Outcome, PublishFailure, RedisFailure, WaitEnded

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
        _order_latency[outcome].observe(seconds)
        if outcome is Outcome.CREATED:
            ORDERS_CREATED.inc()
    if degraded:
        DEGRADED.inc()


_shared_directory: str | None = None  # set when the workers share their values


def share_between_workers(directory: str | None) -> None:
    global _shared_directory
    _shared_directory = directory


def exposition() -> tuple[bytes, str]:
    if _shared_directory is None:
        return generate_latest(), CONTENT_TYPE_LATEST
    _forget_dead_workers(_shared_directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=_shared_directory)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _forget_dead_workers(directory: str) -> None:
    """A worker gunicorn replaced leaves its gauge files behind ("livesum" would count
    its connections in use forever); functions-framework has no child_exit hook to call
    mark_process_dead from, so the scrape does it. Its counters stay: what it counted
    happened."""
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        pid = int(path.rsplit("_", 1)[1][: -len(".db")])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)
        except PermissionError:  # alive (a process we may not signal): keep its values
            pass


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
WAITS = Counter(
    "orders_waits",
    "Duplicates that waited for an in-flight original, by how the wait ended: done (the "
    "original finished), found-in-postgres, claimed (the original gave up or its lease "
    "ran out: this request took over), conflict (409 after IDEMPOTENCY_WAIT_SECONDS), "
    "mismatch (422), redis-down, failed (PostgreSQL failed the check)",
    ["ended"],
)
# Every known label value exported from the start, at zero: a rate() over a series that
# appears only with its first failure misses that failure, and the dashboard shows gaps.
REDIS_FAILED = {kind: REDIS_FAILURES.labels(kind.value) for kind in RedisFailure}
WAIT_ENDED = {ended: WAITS.labels(ended.value) for ended in WaitEnded}
ORDER_LATENCY = Histogram(
    "orders_order_duration_seconds",
    "Time to answer an order request (HTTP or event), by outcome: a replay should answer "
    "in a millisecond, a created order in a few, a waited duplicate in up to "
    "IDEMPOTENCY_WAIT_SECONDS",
    ["outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
_order_latency = {outcome: ORDER_LATENCY.labels(outcome.value) for outcome in Outcome}
INSERT_BATCH_CREATES = Histogram(
    "orders_insert_batch_creates",
    "Creates written by one INSERT (group commit, DATABASE_BATCH_MAX): 1 when a create found "
    "a connection free and nobody queued, more when creates queued behind busy connections",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128),
)

# --- Order events out (issue 15): the outbox. Pending and oldest come from the copy's
# last sweep (every OUTBOX_RETRY_SECONDS) and describe the whole outbox, so every copy
# reports the same value: aggregate them with max(), not sum().

OUTBOX_PENDING = Gauge(
    "orders_outbox_pending",
    "Order events recorded and not yet delivered to K_SINK, as of this copy's last sweep",
    multiprocess_mode="livemax",
)
OUTBOX_OLDEST_PENDING = Gauge(
    "orders_outbox_oldest_pending_seconds",
    "Age of the oldest undelivered order event as of this copy's last sweep; 0 when none",
    multiprocess_mode="livemax",
)
OUTBOX_PUBLISHED = Counter(
    "orders_outbox_published",
    "Order events the sink accepted (2xx); a republished event counts again",
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "orders_outbox_publish_failures",
    "Attempts to publish an order event that left it pending, by kind: timeout, "
    "connection (refused, reset, unresolved), rejected (4xx), sink-error (5xx or other)",
    ["kind"],
)
OUTBOX_PUBLISH_FAILED = {kind: OUTBOX_PUBLISH_FAILURES.labels(kind.value) for kind in PublishFailure}
