"""PostgreSQL connections: a small bounded pool per process; driver errors become ours.

pg8000 is built for one thread per connection and functions-framework serves with
gunicorn threads, so each request borrows a connection and gives it back; a connection
that failed is closed, never lent again. SQLSTATE codes are read here and nowhere else.
"""

from __future__ import annotations

import os
import queue
import ssl
import struct
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from .problems import StoreUnavailable

T = TypeVar("T")

# Server states a retry can outlive: connection failures, shutdown, too many clients,
# a statement or lock timeout, and a schema not applied yet (AUTO_MIGRATE=false before
# `python -m function.migrate` has run).
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "53", "57", "55P03", "40P01", "40001", "42P01")
_UNAVAILABLE_DETAIL = "PostgreSQL did not answer in time; nothing was written, retry with the same key"


def connect_kwargs(url: str, connect_timeout_seconds: float) -> dict[str, Any]:
    """pg8000 arguments from a postgresql:// URL.

    TLS is chosen by `sslmode` in the URL: absent or `disable` means plain TCP, because
    pg8000's default (try TLS first) costs ~50 ms of CPU per connection on a plain server.
    """
    parts = urlsplit(url)
    options = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    sslmode = options.get("sslmode", "disable")
    ssl_context: ssl.SSLContext | bool
    if sslmode in ("disable", "allow", "prefer"):
        ssl_context = False
    elif sslmode == "require":
        ssl_context = ssl.create_default_context()
        ssl_context.check_hostname = False
        ssl_context.verify_mode = ssl.CERT_NONE
    elif sslmode in ("verify-ca", "verify-full"):
        ssl_context = ssl.create_default_context(cafile=options.get("sslrootcert"))
        ssl_context.check_hostname = sslmode == "verify-full"
    else:
        raise ValueError("DATABASE_URL has an unknown sslmode")
    return {
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password) if parts.password else None,
        "host": parts.hostname or "localhost",
        "port": parts.port or 5432,
        "database": unquote(parts.path.lstrip("/")) or None,
        "ssl_context": ssl_context,
        "timeout": connect_timeout_seconds,
        "application_name": "orders-function",
    }


class Session:
    """A pooled connection and the statements already prepared on it.

    Preparing once per connection saves pg8000 re-parsing the SQL text (~170 us of CPU
    per call here) and PostgreSQL re-planning it. (Not for a transaction-mode PgBouncer.)
    """

    def __init__(self, connection: pg8000.native.Connection) -> None:
        self.connection = connection
        self._prepared: dict[str, Any] = {}

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        statement = self._prepared.get(sql)
        if statement is None:
            statement = self._prepared[sql] = self.connection.prepare(sql)
        return statement.run(**params)


class ConnectionPool:
    """At most `size` connections, lent one per thread, made on first need."""

    def __init__(
        self,
        url: str,
        *,
        size: int,
        connect_timeout_seconds: float,
        statement_timeout_seconds: float,
        on_first_connection: Callable[[pg8000.native.Connection], object] | None = None,
    ) -> None:
        self._kwargs = connect_kwargs(url, connect_timeout_seconds)
        self._kwargs["startup_params"] = {
            "statement_timeout": str(int(statement_timeout_seconds * 1000)),
            "lock_timeout": str(int(statement_timeout_seconds * 1000)),
            "idle_in_transaction_session_timeout": str(int(statement_timeout_seconds * 4000)),
        }
        # A hung server (not a dead one) is noticed by the socket, a little after
        # PostgreSQL's own statement timeout would have fired.
        self._socket_timeout = statement_timeout_seconds + 1.0
        self._wait_seconds = connect_timeout_seconds
        self._slots = threading.BoundedSemaphore(size)
        self._idle: queue.LifoQueue[Session] = queue.LifoQueue()
        self._pid = os.getpid()
        self._on_first_connection = on_first_connection
        self._first_lock = threading.Lock()

    def run(self, work: Callable[[Session], T]) -> T:
        """Run `work` on a pooled connection; driver failures become StoreUnavailable.

        A pooled connection that PostgreSQL dropped (a restart, an idle kill) fails on
        first use; that one case is tried once more on a fresh connection, so clients
        do not see a 503 per stale connection after a database restart.
        """
        for attempt in (1, 2):
            reused = False
            try:
                with self._lend() as (session, reused):
                    return work(session)
            except (InterfaceError, OSError, struct.error) as exc:
                if attempt == 1 and reused and not _timed_out(exc):
                    continue
                raise StoreUnavailable(_UNAVAILABLE_DETAIL) from exc
            except DatabaseError as exc:
                if sqlstate(exc).startswith(_UNAVAILABLE_SQLSTATE_PREFIXES):
                    raise StoreUnavailable(_UNAVAILABLE_DETAIL) from exc
                raise
        raise AssertionError("unreachable")

    @contextmanager
    def _lend(self) -> Iterator[tuple[Session, bool]]:
        """Lend a connection; close it instead of returning it if anything failed."""
        if not self._slots.acquire(timeout=self._wait_seconds):
            raise StoreUnavailable("every PostgreSQL connection of this copy stayed busy")
        try:
            session, reused = self._take()
            try:
                yield session, reused
            except BaseException:
                _close_quietly(session.connection)
                raise
            self._idle.put(session)
        finally:
            self._slots.release()

    def _take(self) -> tuple[Session, bool]:
        if os.getpid() != self._pid:  # forked: the parent's sockets are not ours to use
            self._idle = queue.LifoQueue()
            self._pid = os.getpid()
        try:
            return self._idle.get_nowait(), True
        except queue.Empty:
            return Session(self._connect()), False

    def _connect(self) -> pg8000.native.Connection:
        connection = pg8000.native.Connection(**self._kwargs)
        raw_socket = getattr(connection, "_usock", None)
        if raw_socket is not None:
            raw_socket.settimeout(self._socket_timeout)
        if self._on_first_connection is not None:
            with self._first_lock:
                if self._on_first_connection is not None:
                    try:
                        self._on_first_connection(connection)
                    except BaseException:
                        _close_quietly(connection)
                        raise
                    self._on_first_connection = None
        return connection


def sqlstate(exc: DatabaseError) -> str:
    fields = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return str(fields.get("C", ""))


def _close_quietly(connection: pg8000.native.Connection) -> None:
    try:
        connection.close()
    except Exception:
        pass


def _timed_out(exc: BaseException) -> bool:
    """A hung server, not a dropped connection: retrying would only double the wait."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
