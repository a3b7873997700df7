"""Settings: every knob of the function, read once from the environment at start-up.

A missing or malformed value stops the start-up with a message naming the variable
(never its value: URLs hold passwords), instead of failing on the first request.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, TypeVar
from urllib.parse import urlsplit

from .targets import DatabaseTarget, Keepalive, RedisTarget, TargetError, parse_database_url, parse_redis_url

T = TypeVar("T")

MismatchPolicy = Literal["reject", "replay"]
Pooling = Literal["direct", "transaction"]
AuthMode = Literal["gateway", "jwt"]
# Five parameters a row: far below pg8000's 32,767 per statement, and a batch this big
# already costs PostgreSQL a fraction of a single row's statement per order.
BATCH_MAX_LIMIT = 1000


class ConfigError(ValueError):
    """A variable is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Settings:
    # DATABASE_URL and REDIS_URL, parsed and checked; they hold passwords: never in logs or errors
    database: DatabaseTarget = field(repr=False)
    redis: RedisTarget = field(repr=False)
    # direct: PostgreSQL or a session-mode pooler. transaction: a transaction-mode
    # PgBouncer, where no session state (SET, prepared statements) survives a transaction.
    database_pooling: Pooling = "direct"
    idempotency_ttl_seconds: int = 86_400
    # Longer than the slowest create we allow (pool wait 3 s + connect 3 s + INSERT and
    # SELECT at 5+1 s each, about 19 s by default), so a live claim never expires under
    # its owner; a crashed copy blocks its key this long at most.
    idempotency_lease_seconds: int = 30
    idempotency_wait_seconds: float = 5.0
    idempotency_key_required: bool = True
    idempotency_on_mismatch: MismatchPolicy = "reject"
    auto_migrate: bool = True
    # Small: many copies share one PostgreSQL whose max_connections is ~100.
    database_pool_size: int = 4
    # Group commit: creates queued for a connection at the same moment share one INSERT,
    # up to this many (1: each create its own). PostgreSQL's CPU per order falls ~3x by
    # 8 rows a statement and little after; a bigger batch only makes its statement longer.
    database_batch_max: int = 16
    database_connect_timeout_seconds: float = 3.0
    database_statement_timeout_seconds: float = 5.0
    # A Redis that does not answer within this is treated as down for this request:
    # PostgreSQL alone then keeps the guarantees.
    redis_timeout_seconds: float = 0.5
    # A migration runs at start-up on its own connection, outside every request timeout;
    # this bounds its lock wait and statements instead (a stuck holder must not hang a start).
    migration_timeout_seconds: float = 60.0
    log_level: str = "info"
    # gateway: a trusted gateway sets X-Profile-Id. jwt: a verified bearer token's `sub`.
    auth_mode: AuthMode = "gateway"
    jwt_key: str | None = field(default=None, repr=False)  # HS256 secret or PEM public key
    jwt_algorithms: tuple[str, ...] = ()
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    # OpenTelemetry's own switch: an OTLP endpoint set and the SDK not disabled. The SDK
    # reads the other OTEL_* variables itself (endpoint, headers, sampler, resource).
    tracing: bool = False
    # gunicorn worker processes (functions-framework reads WORKERS itself); more than one
    # makes /metrics add up every worker's values (prometheus-client multiprocess mode).
    workers: int = 1
    # prometheus-client's own variable: where workers keep their values, if the operator
    # chose it (an emptyDir); else start-up makes a fresh one when workers > 1.
    metrics_directory: str | None = None
    # Order events out (docs/events-out.md). No sink: nothing is recorded or published.
    k_sink: str | None = field(default=None, repr=False)  # may carry credentials
    k_ce_overrides: tuple[tuple[str, str], ...] = ()  # extensions added to every event
    outbox_retry_seconds: float = 5.0
    # TCP keepalive on the PostgreSQL, Redis and sink connections (targets.Keepalive): an
    # idle connection whose peer vanished without a reset is found dead within
    # idle + interval x probes (60 s by default), not the system's two hours.
    tcp_keepalive_idle_seconds: int = 30
    tcp_keepalive_interval_seconds: int = 10
    tcp_keepalive_probes: int = 3

    @property
    def keepalive(self) -> Keepalive:
        return Keepalive(self.tcp_keepalive_idle_seconds, self.tcp_keepalive_interval_seconds, self.tcp_keepalive_probes)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Fail at start-up naming the variable, not on the first request."""
        return cls(
            database=database_target_from(env),
            redis=redis_target_from(env),
            database_pooling=_choice(
                env, "DATABASE_POOLING", ("direct", "transaction"), "direct"
            ),  # type: ignore[arg-type]
            idempotency_ttl_seconds=_number(env, "IDEMPOTENCY_TTL_SECONDS", int, 86_400, 1),
            idempotency_lease_seconds=_number(env, "IDEMPOTENCY_LEASE_SECONDS", int, 30, 1),
            idempotency_wait_seconds=_number(env, "IDEMPOTENCY_WAIT_SECONDS", float, 5.0, 0),
            idempotency_key_required=_boolean(env, "IDEMPOTENCY_KEY_REQUIRED", True),
            idempotency_on_mismatch=_choice(
                env, "IDEMPOTENCY_ON_MISMATCH", ("reject", "replay"), "reject"
            ),  # type: ignore[arg-type]
            auto_migrate=_boolean(env, "AUTO_MIGRATE", True),
            database_pool_size=_number(env, "DATABASE_POOL_SIZE", int, 4, 1),
            database_batch_max=_number(env, "DATABASE_BATCH_MAX", int, 16, 1, maximum=BATCH_MAX_LIMIT),
            database_connect_timeout_seconds=_number(
                env, "DATABASE_CONNECT_TIMEOUT_SECONDS", float, 3.0, 0.1
            ),
            database_statement_timeout_seconds=_number(
                env, "DATABASE_STATEMENT_TIMEOUT_SECONDS", float, 5.0, 0.1
            ),
            redis_timeout_seconds=_number(env, "REDIS_TIMEOUT_SECONDS", float, 0.5, 0.01),
            migration_timeout_seconds=_number(env, "MIGRATION_TIMEOUT_SECONDS", float, 60.0, 1),
            log_level=_choice(env, "LOG_LEVEL", ("debug", "info", "warning", "error"), "info"),
            auth_mode=_choice(env, "AUTH_MODE", ("gateway", "jwt"), "gateway"),  # type: ignore[arg-type]
            **_jwt_verification(env),
            tracing=_tracing_on(env),
            workers=_number(env, "WORKERS", int, 1, 1),
            metrics_directory=env.get("PROMETHEUS_MULTIPROC_DIR", "").strip() or None,
            k_sink=_sink(env),
            k_ce_overrides=_overrides(env),
            outbox_retry_seconds=_number(env, "OUTBOX_RETRY_SECONDS", float, 5.0, 0.1),
            tcp_keepalive_idle_seconds=_number(env, "TCP_KEEPALIVE_IDLE_SECONDS", int, 30, 1, maximum=32_767),
            tcp_keepalive_interval_seconds=_number(env, "TCP_KEEPALIVE_INTERVAL_SECONDS", int, 10, 1, maximum=32_767),
            tcp_keepalive_probes=_number(env, "TCP_KEEPALIVE_PROBES", int, 3, 1, maximum=127),
        )


def _sink(env: Mapping[str, str]) -> str | None:
    """K_SINK as a SinkBinding sets it: an absolute http(s) URL."""
    raw = env.get("K_SINK", "").strip()
    if not raw:
        return None
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise ConfigError("K_SINK is malformed: expected an http:// or https:// URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("K_SINK is malformed: expected an http:// or https:// URL")
    return raw


# CloudEvents attribute names: lower-case letters and digits, at most 20 (spec 1.0).
_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")
# What an override may not replace: the event's own attributes.
_OWN_ATTRIBUTES = frozenset({"specversion", "type", "source", "id", "time", "datacontenttype",
                             "dataschema", "subject", "data"})


def _overrides(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """K_CE_OVERRIDES as Knative's SinkBinding writes it: {"extensions": {"name": "value"}}."""
    raw = env.get("K_CE_OVERRIDES", "").strip()
    if not raw:
        return ()
    rule = ('K_CE_OVERRIDES must be JSON {"extensions": {"name": "value"}}: lower-case alphanumeric '
            "names, printable ASCII string values")
    try:
        document = json.loads(raw)
    except ValueError:
        raise ConfigError(rule) from None
    if not isinstance(document, dict) or set(document) - {"extensions"}:
        raise ConfigError(rule)
    extensions = document.get("extensions") or {}
    if not isinstance(extensions, dict):
        raise ConfigError(rule)
    for name, value in extensions.items():
        if not _EXTENSION_NAME.fullmatch(name) or not _header_safe(value):
            raise ConfigError(rule)
        if name in _OWN_ATTRIBUTES:
            raise ConfigError("K_CE_OVERRIDES may not replace the event's own attributes (type, source, id, ...)")
    return tuple(sorted(extensions.items()))


def _header_safe(value: object) -> bool:
    """An extension travels as a `ce-` header: printable ASCII needs no percent-encoding."""
    return isinstance(value, str) and value.isascii() and value.isprintable()


def _tracing_on(env: Mapping[str, str]) -> bool:
    """OpenTelemetry's rule: export only where an endpoint is named, and never with
    OTEL_SDK_DISABLED=true (case-insensitive, as the SDK reads it)."""
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip() or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return bool(endpoint) and env.get("OTEL_SDK_DISABLED", "").strip().lower() != "true"


def _jwt_verification(env: Mapping[str, str]) -> dict[str, Any]:
    """AUTH_MODE=jwt needs exactly one key: JWT_SECRET (HS256) or a PEM public key file
    (RS256 or ES256); the algorithm list follows the key, so a token cannot pick it."""
    if env.get("AUTH_MODE", "").strip().lower() != "jwt":
        return {}
    secret, key_file = env.get("JWT_SECRET", ""), env.get("JWT_PUBLIC_KEY_FILE", "").strip()
    if bool(secret) == bool(key_file):
        raise ConfigError("AUTH_MODE=jwt needs exactly one of JWT_SECRET or JWT_PUBLIC_KEY_FILE")
    if secret:
        if len(secret) < 32:
            raise ConfigError("JWT_SECRET must be at least 32 characters")
        key, algorithms = secret, ("HS256",)
    else:
        try:
            with open(key_file, encoding="ascii") as pem:
                key = pem.read()
        except (OSError, UnicodeDecodeError):
            raise ConfigError("JWT_PUBLIC_KEY_FILE cannot be read as a PEM file") from None
        algorithms = ("ES256",) if "BEGIN PUBLIC KEY" in key and _is_ec(key) else ("RS256",)
    return {
        "jwt_key": key,
        "jwt_algorithms": algorithms,
        "jwt_audience": env.get("JWT_AUDIENCE") or None,
        "jwt_issuer": env.get("JWT_ISSUER") or None,
    }


def _is_ec(pem: str) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        return isinstance(load_pem_public_key(pem.encode()), ec.EllipticCurvePublicKey)
    except ValueError:
        raise ConfigError("JWT_PUBLIC_KEY_FILE does not hold a PEM public key") from None


def database_target_from(env: Mapping[str, str]) -> DatabaseTarget:
    return _parsed(env, "DATABASE_URL", "postgresql://user:password@host:5432/orders", parse_database_url)


def redis_target_from(env: Mapping[str, str]) -> RedisTarget:
    return _parsed(env, "REDIS_URL", "redis://host:6379/0", parse_redis_url)


def _parsed(env: Mapping[str, str], name: str, example: str, parse: Callable[[str], T]) -> T:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is required (e.g. {example})")
    try:
        return parse(value)
    except TargetError as exc:  # says which part is wrong, never the value
        raise ConfigError(f"{name} is malformed: {exc}") from None


def _number(
    env: Mapping[str, str], name: str, kind: Callable[[str], T], default: T, minimum: float,
    *, maximum: float = math.inf,
) -> T:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    noun = "an integer" if kind is int else "a number"
    rule = f"{name} must be {noun} >= {minimum:g}"
    if maximum != math.inf:
        rule = f"{name} must be {noun} from {minimum:g} to {maximum:g}"
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(rule) from None
    # float() accepts "nan" and "inf": a wait or timeout of either breaks every request.
    if not math.isfinite(value) or not minimum <= value <= maximum:  # type: ignore[operator, arg-type]
        raise ConfigError(rule)
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
