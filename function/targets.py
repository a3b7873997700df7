"""DATABASE_URL and REDIS_URL, parsed and checked once at start-up.

A malformed URL (a port that is not a number, an unknown `sslmode`) must stop the
start-up naming the part at fault; errors here never quote the URL: it holds a password.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis.connection

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DATABASE_OPTIONS = frozenset({"sslmode", "sslrootcert", "application_name"})
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
SENTINEL_SCHEME = "redis+sentinel://"
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
CLUSTER_OPTIONS = frozenset({"ssl_ca_certs", "ssl_cert_reqs"})


class TargetError(ValueError):
    """Names the part of a URL that is wrong, never its value."""


@dataclass(frozen=True)
class DatabaseTarget:
    host: str
    port: int
    user: str
    password: str | None = field(repr=False)
    database: str | None
    sslmode: str = "disable"
    sslrootcert: str | None = None
    application_name: str = "orders-function"


@dataclass(frozen=True)
class Sentinels:
    addresses: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ClusterSeeds:
    """Some nodes of a Redis Cluster: the client asks them for the rest (slots, primaries,
    replicas) and follows the cluster from there. A cluster has one database, 0."""

    addresses: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False  # rediss+cluster://
    ssl_ca_certs: str | None = None
    ssl_cert_reqs: str = "required"


@dataclass(frozen=True)
class RedisTarget:
    url: str = field(repr=False)  # redis:// rediss:// unix://, passed to redis-py as it is
    sentinels: Sentinels | None = None  # set instead for redis+sentinel://
    cluster: ClusterSeeds | None = None  # set instead for redis+cluster:// and rediss+cluster://


def parse_database_url(url: str) -> DatabaseTarget:
    if not url.startswith(("postgresql://", "postgres://")):
        raise TargetError("it must start with postgresql:// or postgres://")
    parts = urlsplit(url)
    options = _options(parts.query, DATABASE_OPTIONS)
    sslmode = options.get("sslmode", "disable")
    if sslmode not in SSL_MODES:
        raise TargetError(f"sslmode must be one of {', '.join(SSL_MODES)}")
    return DatabaseTarget(
        host=parts.hostname or "localhost",
        port=_port(parts.netloc, default=5432),
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password) if parts.password else None,
        database=unquote(parts.path.lstrip("/")) or None,
        sslmode=sslmode,
        sslrootcert=options.get("sslrootcert"),
        application_name=options.get("application_name", "orders-function"),
    )


def parse_redis_url(url: str) -> RedisTarget:
    if url.startswith(SENTINEL_SCHEME):
        return RedisTarget(url, _sentinels(url[len(SENTINEL_SCHEME):]))
    if url.startswith(CLUSTER_SCHEMES):
        return RedisTarget(url, cluster=_cluster_seeds(url))
    if not url.startswith(REDIS_SCHEMES):
        raise TargetError(f"it must start with one of {', '.join(REDIS_SCHEMES + (SENTINEL_SCHEME,) + CLUSTER_SCHEMES)}")
    if not url.startswith("unix://"):
        parts = urlsplit(url)
        _port(parts.netloc, default=6379)
        _db(parts.path)
    try:
        redis.connection.parse_url(url)  # redis-py's own reading: options and their types
    except (ValueError, TypeError):
        raise TargetError("an option in the query string is not valid") from None
    return RedisTarget(url)


def _sentinels(rest: str) -> Sentinels:
    """`[:password@]host:port[,host:port...]/service_name[/db]`"""
    location, _, path = rest.partition("/")
    credentials, at, hosts = location.rpartition("@")
    password = unquote(credentials.partition(":")[2]) or None if at else None
    addresses = []
    for address in hosts.split(","):
        host, colon, port = address.rpartition(":")
        if not colon or not host:
            raise TargetError("each sentinel must be host:port")
        addresses.append((host.strip("[]"), _port("x:" + port, default=26379)))
    service_name, _, db = path.partition("/")
    if not service_name:
        raise TargetError("a sentinel URL names the service: redis+sentinel://host:port/service_name")
    return Sentinels(tuple(addresses), unquote(service_name), _db("/" + db), password)


def _cluster_seeds(url: str) -> ClusterSeeds:
    """`redis[s]+cluster://[[user]:password@]host:port[,host:port...][?ssl_ca_certs=...]`"""
    scheme, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    location, slash, path = rest.partition("/")
    if path.strip("/"):
        raise TargetError("a cluster URL has no database number: a Redis Cluster has only database 0")
    credentials, at, hosts = location.rpartition("@")
    username, _, password = credentials.partition(":") if at else ("", "", "")
    addresses = []
    for address in hosts.split(","):
        host, colon, port = address.rpartition(":")
        if not colon or not host:
            raise TargetError("each cluster node must be host:port")
        addresses.append((host.strip("[]"), _port("x:" + port, default=6379)))
    options = _options(query, CLUSTER_OPTIONS)
    cert_reqs = options.get("ssl_cert_reqs", "required")
    if cert_reqs not in ("none", "optional", "required"):
        raise TargetError("ssl_cert_reqs must be one of none, optional, required")
    return ClusterSeeds(
        tuple(addresses), unquote(username) or None, unquote(password) or None,
        tls=scheme == "rediss+cluster", ssl_ca_certs=options.get("ssl_ca_certs"), ssl_cert_reqs=cert_reqs,
    )


def _port(netloc: str, *, default: int) -> int:
    host_part = netloc.rpartition("@")[2]
    if host_part.startswith("["):  # [::1]:5432
        host_part = host_part.partition("]")[2]
    _, colon, port = host_part.rpartition(":")
    if not colon or port == "":
        return default
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise TargetError("the port must be a number from 1 to 65535")
    return int(port)


def _db(path: str) -> int:
    number = path.strip("/")
    if number == "":
        return 0
    if not number.isascii() or not number.isdigit():
        raise TargetError("the database number must be a non-negative integer")
    return int(number)


def _options(query: str, known: frozenset[str]) -> dict[str, str]:
    try:
        options = {name: values[-1] for name, values in parse_qs(query, strict_parsing=bool(query)).items()}
    except ValueError:
        raise TargetError("the query string is not name=value pairs") from None
    unknown = sorted(set(options) - known)
    if unknown:
        raise TargetError(f"unknown option {unknown[0][:40]!r}; known: {', '.join(sorted(known))}")
    return options


def connect_kwargs(target: DatabaseTarget, connect_timeout_seconds: float) -> dict[str, Any]:
    """pg8000 arguments. TLS is chosen by `sslmode`: absent or `disable` means plain TCP,
    because pg8000's default (try TLS first) costs CPU on every connection (the README's
    figure)."""
    ssl_context: ssl.SSLContext | bool = False
    if target.sslmode == "require":
        ssl_context = ssl.create_default_context()
        ssl_context.check_hostname = False
        ssl_context.verify_mode = ssl.CERT_NONE
    elif target.sslmode in ("verify-ca", "verify-full"):
        ssl_context = ssl.create_default_context(cafile=target.sslrootcert)
        ssl_context.check_hostname = target.sslmode == "verify-full"
    return {
        "user": target.user, "password": target.password, "host": target.host,
        "port": target.port, "database": target.database, "ssl_context": ssl_context,
        "timeout": connect_timeout_seconds, "application_name": target.application_name,
    }


@dataclass(frozen=True)
class Keepalive:
    """TCP keepalive for the PostgreSQL, Redis and sink connections: an idle connection
    whose peer vanished without a reset (a failover that moved the address, a host gone)
    is found dead after `idle_seconds + interval_seconds * probes`, by the kernel, before a
    request waits on it. The system's default waits two hours before the first probe."""

    idle_seconds: int = 30
    interval_seconds: int = 10
    probes: int = 3

    def socket_options(self) -> dict[int, int]:
        """Per-socket options (level IPPROTO_TCP), as redis-py's `socket_keepalive_options` takes them."""
        return {socket.TCP_KEEPIDLE: self.idle_seconds, socket.TCP_KEEPINTVL: self.interval_seconds,
                socket.TCP_KEEPCNT: self.probes}

    def apply(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in self.socket_options().items():
            sock.setsockopt(socket.IPPROTO_TCP, option, value)

    def redis_options(self) -> dict[str, Any]:
        return {"socket_keepalive": True, "socket_keepalive_options": self.socket_options()}
