"""The label sets: one enum each, shared by the code that decides, the log line, the
metrics and the spans, so a value cannot be spelled two ways."""

from __future__ import annotations

import enum


class Outcome(str, enum.Enum):
    """What happened to an order request (`orders_idempotency_outcomes_total{outcome}`)."""

    CREATED = "created"                      # this request wrote the order
    REPLAYED_REDIS = "replayed-redis"        # the finished answer was in Redis
    REPLAYED_POSTGRES = "replayed-postgres"  # PostgreSQL held the order (Redis lost, down or stale)
    WAITED = "waited"                        # waited for the in-flight original, then replayed it
    CONFLICT = "conflict"                    # 409: the original was still in flight after the wait
    MISMATCH = "mismatch"                    # 422: same key, different body


class WaitEnded(enum.StrEnum):
    """How a duplicate's wait for its in-flight original ended (`orders_waits_total{ended}`,
    the `wait` span's `orders.wait.ended`); every wait ends in exactly one."""

    DONE = "done"                             # the original finished: its answer
    FOUND_IN_POSTGRES = "found-in-postgres"   # the stale-claim check found the order
    CLAIMED = "claimed"                       # the original gave up or its lease ran out: ours now
    CONFLICT = "conflict"                     # 409 after IDEMPOTENCY_WAIT_SECONDS
    MISMATCH = "mismatch"                     # 422
    REDIS_DOWN = "redis-down"                 # Redis stopped answering: PostgreSQL decides
    FAILED = "failed"                         # PostgreSQL failed the check, or the request was cancelled


class RedisFailure(enum.StrEnum):
    """Why a Redis call did not answer usably (`orders_redis_failures_total{kind}`, a
    Redis span's `error.type`)."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"                 # refused or dropped
    READONLY = "readonly"                     # a replica, or a primary demoted by a failover
    UNREADABLE_RECORD = "unreadable-record"   # a value we cannot parse
    CLUSTER = "cluster"                       # a Redis Cluster could not serve the key's slot (CLUSTERDOWN, redirections that never settled)
    OTHER = "other"


class PublishFailure(enum.StrEnum):
    """Why an attempt to publish an order event left it pending: the `kind` label of
    orders_outbox_publish_failures_total and the publish span's error.type."""

    TIMEOUT = "timeout"          # no complete answer within the POST timeout
    CONNECTION = "connection"    # refused, reset, or the sink's name did not resolve
    REJECTED = "rejected"        # a 4xx: the sink (or the Broker) refused this event
    SINK_ERROR = "sink-error"    # a 5xx, or any other answer that is not 2xx
