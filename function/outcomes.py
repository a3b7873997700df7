"""What happened to an order request: one vocabulary for log lines, metrics and problems."""

from __future__ import annotations

import enum


class Outcome(str, enum.Enum):
    CREATED = "created"                      # this request wrote the order
    REPLAYED_REDIS = "replayed-redis"        # the finished answer was in Redis
    REPLAYED_POSTGRES = "replayed-postgres"  # PostgreSQL held the order (Redis lost, down or stale)
    WAITED = "waited"                        # waited for the in-flight original, then replayed it
    CONFLICT = "conflict"                    # 409: the original was still in flight after the wait
    MISMATCH = "mismatch"                    # 422: same key, different body


class PublishFailure(str, enum.Enum):
    """Why an attempt to publish an order event left it pending: the `kind` label of
    orders_outbox_publish_failures_total and the publish span's error.type."""

    TIMEOUT = "timeout"          # no complete answer within the POST timeout
    CONNECTION = "connection"    # refused, reset, or the sink's name did not resolve
    REJECTED = "rejected"        # a 4xx: the sink (or the Broker) refused this event
    SINK_ERROR = "sink-error"    # a 5xx, or any other answer that is not 2xx
