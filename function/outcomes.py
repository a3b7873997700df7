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
