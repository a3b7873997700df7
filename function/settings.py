"""Settings: every knob of the function, read once from the environment at start-up.

A missing or malformed value stops the start-up with a message naming the variable
(never its value: URLs hold passwords), instead of failing on the first request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping, TypeVar

T = TypeVar("T")

MismatchPolicy = Literal["reject", "replay"]


class ConfigError(ValueError):
    """A variable is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Settings:
    database_url: str = field(repr=False)  # holds a password: never in logs or errors
    redis_url: str = field(repr=False)
    idempotency_ttl_seconds: int = 86_400
    # Longer than the slowest create we allow (pool wait + connect + statement
    # timeouts, about 10 s by default), so a live claim never expires under its owner;
    # a crashed copy blocks its key this long at most.
    idempotency_lease_seconds: int = 30
    idempotency_wait_seconds: float = 5.0
    idempotency_key_required: bool = True
    idempotency_on_mismatch: MismatchPolicy = "reject"
    auto_migrate: bool = True
    # Small: many copies share one PostgreSQL whose max_connections is ~100.
    database_pool_size: int = 4
    database_connect_timeout_seconds: float = 3.0
    database_statement_timeout_seconds: float = 5.0
    # A Redis that does not answer within this is treated as down for this request:
    # PostgreSQL alone then keeps the guarantees.
    redis_timeout_seconds: float = 0.5
    log_level: str = "info"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Fail at start-up naming the variable, not on the first request."""
        return cls(
            database_url=_url(env, "DATABASE_URL", ("postgresql://", "postgres://")),
            redis_url=_url(env, "REDIS_URL", ("redis://", "rediss://", "unix://")),
            idempotency_ttl_seconds=_number(env, "IDEMPOTENCY_TTL_SECONDS", int, 86_400, 1),
            idempotency_lease_seconds=_number(env, "IDEMPOTENCY_LEASE_SECONDS", int, 30, 1),
            idempotency_wait_seconds=_number(env, "IDEMPOTENCY_WAIT_SECONDS", float, 5.0, 0),
            idempotency_key_required=_boolean(env, "IDEMPOTENCY_KEY_REQUIRED", True),
            idempotency_on_mismatch=_choice(
                env, "IDEMPOTENCY_ON_MISMATCH", ("reject", "replay"), "reject"
            ),  # type: ignore[arg-type]
            auto_migrate=_boolean(env, "AUTO_MIGRATE", True),
            database_pool_size=_number(env, "DATABASE_POOL_SIZE", int, 4, 1),
            database_connect_timeout_seconds=_number(
                env, "DATABASE_CONNECT_TIMEOUT_SECONDS", float, 3.0, 0.1
            ),
            database_statement_timeout_seconds=_number(
                env, "DATABASE_STATEMENT_TIMEOUT_SECONDS", float, 5.0, 0.1
            ),
            redis_timeout_seconds=_number(env, "REDIS_TIMEOUT_SECONDS", float, 0.5, 0.01),
            log_level=_choice(env, "LOG_LEVEL", ("debug", "info", "warning", "error"), "info"),
        )


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is required (e.g. {schemes[0]}...)")
    if not value.startswith(schemes):
        raise ConfigError(f"{name} must start with one of {', '.join(schemes)}")
    return value


def _number(
    env: Mapping[str, str], name: str, kind: Callable[[str], T], default: T, minimum: float
) -> T:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a {kind.__name__} >= {minimum}") from None
    if value < minimum:  # type: ignore[operator]
        raise ConfigError(f"{name} must be a {kind.__name__} >= {minimum}")
    return value


def _boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise ConfigError(f"{name} must be true or false")


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}")
    return raw
