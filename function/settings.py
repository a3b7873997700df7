"""Settings: every knob of the function, read once from the environment at start-up.

A missing or malformed value stops the start-up with a message naming the variable
(never its value: URLs hold passwords), instead of failing on the first request.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import MISSING, dataclass, field, fields
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
class Declared:
    """One setting: its variable, what it means, and the rule its value keeps. Its type and
    default are the Settings field's; `from_env` reads every field declared so."""

    variable: str
    meaning: str  # one line; the README's table says more, and test_docs checks its default
    minimum: float = -math.inf
    maximum: float = math.inf
    choices: tuple[str, ...] = ()
    read: Callable[[Mapping[str, str]], Any] | None = None  # its own reader (URLs, JSON, a group)

    def value(self, env: Mapping[str, str], default: Any) -> Any:
        if self.read is not None:
            return self.read(env)
        if isinstance(default, bool):
            return _boolean(env, self.variable, default)
        if isinstance(default, (int, float)):
            return _number(env, self.variable, type(default), default, self.minimum, maximum=self.maximum)
        return _choice(env, self.variable, self.choices, default)


REQUIRED: Any = MISSING


def setting(default: Any, variable: str, meaning: str, *, secret: bool = False, **rule: Any) -> Any:
    """A Settings field declared once: default, variable, meaning and rule (minimum,
    maximum, choices, or its own `read`). `secret`: never in repr, so never in a log."""
    declared = Declared(variable, meaning, **rule)
    return field(default=default, repr=not secret, metadata={"declared": declared})


@dataclass(frozen=True)
class Settings:
    database: DatabaseTarget = setting(
        REQUIRED, "DATABASE_URL", "PostgreSQL: postgresql://user:pass@host:port/db", secret=True,
        read=lambda env: database_target_from(env))
    redis: RedisTarget = setting(
        REQUIRED, "REDIS_URL", "Redis: redis://, rediss://, redis+sentinel:// or a cluster's seeds", secret=True,
        read=lambda env: redis_target_from(env))
    # direct: PostgreSQL or a session-mode pooler. transaction: a transaction-mode
    # PgBouncer, where no session state (SET, prepared statements) survives a transaction.
    database_pooling: Pooling = setting(
        "direct", "DATABASE_POOLING", "direct, or transaction (a transaction-mode PgBouncer)",
        choices=("direct", "transaction"))
    idempotency_ttl_seconds: int = setting(
        86_400, "IDEMPOTENCY_TTL_SECONDS", "how long a finished key stays in Redis", minimum=1)
    # Longer than the slowest create we allow (pool wait 3 s + connect 3 s + INSERT and
    # SELECT at 5+1 s each, about 19 s by default), so a live claim never expires under
    # its owner; a crashed copy blocks its key this long at most.
    idempotency_lease_seconds: int = setting(
        30, "IDEMPOTENCY_LEASE_SECONDS", "how long a claim holds before another copy may take over", minimum=1)
    idempotency_wait_seconds: float = setting(
        5.0, "IDEMPOTENCY_WAIT_SECONDS", "how long a duplicate waits for the in-flight original before 409",
        minimum=0)
    idempotency_key_required: bool = setting(
        True, "IDEMPOTENCY_KEY_REQUIRED", "true: a POST without a key is a 400")
    idempotency_on_mismatch: MismatchPolicy = setting(
        "reject", "IDEMPOTENCY_ON_MISMATCH", "same key, another body: reject (422) or replay",
        choices=("reject", "replay"))
    auto_migrate: bool = setting(True, "AUTO_MIGRATE", "apply the schema when a copy starts")
    # Small: many copies share one PostgreSQL whose max_connections is ~100.
    database_pool_size: int = setting(
        4, "DATABASE_POOL_SIZE", "PostgreSQL connections (and pg8000 threads) per worker", minimum=1)
    # Group commit: creates queued for a connection at the same moment share one INSERT,
    # up to this many (1: each create its own). PostgreSQL's CPU per order falls steeply
    # up to ~8 rows a statement and little after (docs/group-commit.md, "Capacity model,
    # re-derived"); a bigger batch only makes its statement longer.
    database_batch_max: int = setting(
        16, "DATABASE_BATCH_MAX", "most creates one INSERT carries (1: no group commit)",
        minimum=1, maximum=BATCH_MAX_LIMIT)
    database_connect_timeout_seconds: float = setting(
        3.0, "DATABASE_CONNECT_TIMEOUT_SECONDS", "connect timeout, and the longest wait for a pooled connection",
        minimum=0.1)
    database_statement_timeout_seconds: float = setting(
        5.0, "DATABASE_STATEMENT_TIMEOUT_SECONDS", "statement_timeout and lock_timeout", minimum=0.1)
    # A Redis that does not answer within this is treated as down for this request:
    # PostgreSQL alone then keeps the guarantees.
    redis_timeout_seconds: float = setting(
        0.5, "REDIS_TIMEOUT_SECONDS", "Redis connect and command timeout", minimum=0.01)
    # A migration runs at start-up on its own connection, outside every request timeout;
    # this bounds its lock wait and statements instead (a stuck holder must not hang a start).
    migration_timeout_seconds: float = setting(
        60.0, "MIGRATION_TIMEOUT_SECONDS", "lock wait and statement timeout of the start-up migration", minimum=1)
    log_level: str = setting(
        "info", "LOG_LEVEL", "the least severe level logged", choices=("debug", "info", "warning", "error"))
    # gateway: a trusted gateway sets X-Profile-Id. jwt: a verified bearer token's `sub`.
    auth_mode: AuthMode = setting(
        "gateway", "AUTH_MODE", "gateway (trust X-Profile-Id) or jwt (a bearer token's subject)",
        choices=("gateway", "jwt"))
    # Read together, by _jwt_verification (AUTH_MODE=jwt only): JWT_SECRET or JWT_PUBLIC_KEY_FILE.
    jwt_key: str | None = field(default=None, repr=False)  # HS256 secret or PEM public key
    jwt_algorithms: tuple[str, ...] = ()
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    # OpenTelemetry's own switch: an OTLP endpoint set and the SDK not disabled. The SDK
    # reads the other OTEL_* variables itself (endpoint, headers, sampler, resource).
    tracing: bool = setting(
        False, "OTEL_EXPORTER_OTLP_ENDPOINT", "where spans are exported (OTLP/HTTP); unset: no tracing",
        read=lambda env: _tracing_on(env))
    # gunicorn worker processes (functions-framework reads WORKERS itself); more than one
    # makes /metrics add up every worker's values (prometheus-client multiprocess mode).
    workers: int = setting(1, "WORKERS", "gunicorn worker processes", minimum=1)
    # prometheus-client's own variable: where workers keep their values, if the operator
    # chose it (an emptyDir); else start-up makes a fresh one when workers > 1.
    metrics_directory: str | None = setting(
        None, "PROMETHEUS_MULTIPROC_DIR", "where workers keep their metric values",
        read=lambda env: env.get("PROMETHEUS_MULTIPROC_DIR", "").strip() or None)
    # Order events out (docs/events-out.md). No sink: nothing is recorded or published.
    k_sink: str | None = setting(
        None, "K_SINK", "where order events are published; unset: none are", secret=True,  # may carry credentials
        read=lambda env: _sink(env))
    k_ce_overrides: tuple[tuple[str, str], ...] = setting(
        (), "K_CE_OVERRIDES", "extensions added to every published event (JSON)",
        read=lambda env: _overrides(env))
    outbox_retry_seconds: float = setting(
        5.0, "OUTBOX_RETRY_SECONDS", "how often a copy retries order events not yet delivered", minimum=0.1)
    # TCP keepalive on the PostgreSQL, Redis and sink connections (targets.Keepalive): an
    # idle connection whose peer vanished without a reset is found dead within
    # idle + interval x probes (60 s by default), not the system's two hours.
    tcp_keepalive_idle_seconds: int = setting(
        30, "TCP_KEEPALIVE_IDLE_SECONDS", "idle time before the first keepalive probe", minimum=1, maximum=32_767)
    tcp_keepalive_interval_seconds: int = setting(
        10, "TCP_KEEPALIVE_INTERVAL_SECONDS", "time between keepalive probes", minimum=1, maximum=32_767)
    tcp_keepalive_probes: int = setting(
        3, "TCP_KEEPALIVE_PROBES", "unanswered probes before the connection is given up", minimum=1, maximum=127)

    @property
    def keepalive(self) -> Keepalive:
        return Keepalive(self.tcp_keepalive_idle_seconds, self.tcp_keepalive_interval_seconds, self.tcp_keepalive_probes)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Fail at start-up naming the variable, not on the first request."""
        values = {name: declared.value(env, default) for name, declared, default in declarations()}
        return cls(**values, **_jwt_verification(env))


def one_from_env(env: Mapping[str, str], name: str) -> Any:
    """One setting (a Settings field name), read as from_env reads it: for a tool that
    needs a few, such as `python -m function.migrate`, without requiring all."""
    for field_name, declared, default in declarations():
        if field_name == name:
            return declared.value(env, default)
    raise KeyError(name)


def declarations() -> list[tuple[str, Declared, Any]]:
    """(field name, its declaration, its default: REQUIRED if it has none), in field order."""
    return [
        (item.name, item.metadata["declared"], item.default)
        for item in fields(Settings) if "declared" in item.metadata
    ]


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
