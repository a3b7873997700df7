"""PostgreSQL connections: pg8000 in a bounded pool of worker threads, errors made ours.

pg8000 blocks, so no coroutine ever calls it: `Database.run` hands the work to one of
`pool_size` threads, each lending one connection, and a request waiting for a free one
awaits a semaphore instead of holding a thread. A slow PostgreSQL therefore fills this
queue, never the event loop, and replays served from Redis go on meanwhile.
SQLSTATE codes are read here and nowhere else; callers see `DatabaseUnavailable` (a
retry may succeed: a 503) or `DatabaseFailed` (it will not), never a pg8000 error.

A break makes every connection of its time suspect: a restart, a failover or a partition
breaks them all at once, not one. So the pool counts breaks (its *epoch*), stamps each
connection with the epoch it was born in, and closes an idle connection older than the
last break when it comes out of the pool, before it serves anything; the work that met
the break is tried once more, on a new connection. No round trip per checkout.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import queue
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable, TypeVar

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from . import metrics
from .targets import DatabaseTarget, Keepalive, connect_kwargs

T = TypeVar("T")

# Server states a retry can outlive: connection failures, shutdown, too many clients,
# a full disk, a statement or lock timeout, a read-only server (a demoted primary, an
# operator's default_transaction_read_only), and a schema not applied yet
# (AUTO_MIGRATE=false before `python -m function.migrate` has run).
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "53", "57", "55P03", "40P01", "40001", "42P01", "25006")
# The connection, not the work, is at fault: the server ended the session (shut down,
# crashed, not accepting connections, an idle session or idle transaction timed out), or
# the server behind it cannot write (a failover demoted it; a new connection may reach
# the new primary). Nothing of the work was committed; it is tried once more on a new
# connection, and every idle connection as old as this one is given up.
_CONNECTION_ENDED_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57P05", "25P03", "25006"})
LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout
NOT_ANSWERING = "PostgreSQL did not answer in time; nothing was written, retry with the same key"
ALL_BUSY = "every PostgreSQL connection of this copy stayed busy; retry with the same key"
CANNOT_WRITE = "PostgreSQL cannot take writes now (read-only or out of disk); nothing was written, retry with the same key"
_CANNOT_WRITE_SQLSTATES = frozenset({"25006", "53100"})  # read-only transaction, disk full


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot do the work now; nothing was committed by it. `detail` is safe to show.
    `blocked_by_lock`: PostgreSQL itself answers, but a row waited past lock_timeout for
    another transaction's lock (in a batch, maybe one row's; see batching.py)."""

    def __init__(self, detail: str, *, blocked_by_lock: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.blocked_by_lock = blocked_by_lock


class DatabaseFailed(Exception):
    """PostgreSQL refused the work for a reason a retry will not change (a bug, or a
    schema that is not ours); nothing was committed. Carries the SQLSTATE, never the SQL."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"PostgreSQL refused the work (SQLSTATE {sqlstate or 'unknown'})")
        self.sqlstate = sqlstate


class Session:
    """A pooled connection, used by one thread at a time.

    direct pooling: statements are prepared once per connection (saves pg8000 re-parsing
    the SQL, ~170 us of CPU per call, and PostgreSQL re-planning it) and the timeouts are
    session settings. transaction pooling: a PgBouncer may hand the server connection to
    another client after each transaction, so every unit of work is one explicit
    transaction carrying its own timeouts (SET LOCAL), with unnamed statements only.
    """

    def __init__(
        self, connection: pg8000.native.Connection, *, transaction_pooling: bool, timeouts_sql: str, epoch: int = 0,
    ) -> None:
        self.connection = connection
        self.epoch = epoch  # the pool's break count when it was made (Database.epoch)
        self._transaction_pooling = transaction_pooling
        self._timeouts_sql = timeouts_sql
        self._prepared: dict[str, Any] = {}

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        if self._transaction_pooling:
            # An unnamed statement, as Connection.run sends it, minus re-tokenising the
            # SQL for its :names on every call (its share of a create: docs/bench.md,
            # "Figures behind choices in the code").
            text, make_values = _unnamed(sql)
            rows: list[list[Any]] = self.connection.execute_unnamed(text, make_values(params)).rows
            return rows
        prepared = self._prepared.get(sql)
        if prepared is None:
            prepared = self._prepared[sql] = self.connection.prepare(sql)
        return prepared.run(**params)

    def unit(self, work: Callable[[Session], T]) -> T:
        if not self._transaction_pooling:
            return work(self)
        self.connection.execute_simple("BEGIN; " + self._timeouts_sql)
        try:
            result = work(self)
        except DatabaseError:
            try:  # the connection is closed after a failure anyway; this only frees the server's
                self.connection.execute_simple("ROLLBACK")
            except Exception:
                pass
            raise
        # Anything else (a dropped or silent connection, a timeout) gets no ROLLBACK: on a
        # partitioned connection it would only wait out the socket timeout a second time.
        self.connection.execute_simple("COMMIT")
        return result


@functools.lru_cache(maxsize=64)
def _unnamed(sql: str) -> tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]]]:
    """The SQL with `$n` placeholders and how to order the values: pg8000's own reading."""
    return pg8000.native.to_statement(sql)


class Database:
    """At most `pool_size` connections and as many threads, made on first need. One per
    worker process (worker.for_this_process builds it after the fork), never shared."""

    def __init__(
        self,
        target: DatabaseTarget,
        *,
        pool_size: int,
        transaction_pooling: bool,
        connect_timeout_seconds: float,
        statement_timeout_seconds: float,
        before_first_query: Callable[[pg8000.native.Connection], object] | None = None,
        keepalive: Keepalive | None = Keepalive(),
    ) -> None:
        self._kwargs = connect_kwargs(target, connect_timeout_seconds)
        self._keepalive = keepalive
        timeout_ms = int(statement_timeout_seconds * 1000)
        # A little shorter, so a row blocked by another transaction's lock ends as a lock
        # timeout (55P03), told apart from a slow server (57014, statement_timeout).
        lock_timeout_ms = max(1, timeout_ms * 4 // 5)
        self._transaction_pooling = transaction_pooling
        self._timeouts_sql = f"SET LOCAL statement_timeout = {timeout_ms}; SET LOCAL lock_timeout = {lock_timeout_ms}"
        if not transaction_pooling:  # session settings: fine when the session is ours alone
            self._kwargs["startup_params"] = {
                "statement_timeout": str(timeout_ms), "lock_timeout": str(lock_timeout_ms),
                "idle_in_transaction_session_timeout": str(timeout_ms * 4),
            }
        # A hung server (not a dead one) is noticed by the socket, a little after
        # PostgreSQL's own statement timeout would have fired.
        self._socket_timeout = statement_timeout_seconds + 1.0
        self._wait_seconds = connect_timeout_seconds
        self._slots = asyncio.Semaphore(pool_size)
        self._threads = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="pg8000")
        self._idle: queue.LifoQueue[Session] = queue.LifoQueue()
        self._epoch = 0
        self._epoch_lock = threading.Lock()
        self._before_first_query = before_first_query
        metrics.DB_POOL_MAX.set(pool_size)

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run `work(session)` on a pooled connection in a worker thread."""
        async with self.connection_slot():
            return await self.on_connection(work)

    @contextlib.asynccontextmanager
    async def connection_slot(self, wait_seconds: float | None = None, *, counted: bool = True) -> AsyncIterator[None]:
        """Hold one of the pool's `pool_size` slots; give up with `ALL_BUSY` after the wait.

        `counted=False` is for batching.InsertBatcher, which counts its queued requests
        in the waiting gauge and wait histogram itself (one per request, not per batch)."""
        if counted:
            metrics.DB_POOL_WAITING.inc()
        asked = time.perf_counter()
        try:
            async with asyncio.timeout(self._wait_seconds if wait_seconds is None else wait_seconds):
                await self._slots.acquire()
        except TimeoutError:
            raise DatabaseUnavailable(ALL_BUSY) from None
        finally:
            if counted:
                metrics.DB_POOL_WAITING.dec()
                metrics.DB_POOL_WAIT.observe(time.perf_counter() - asked)  # a timed-out wait too
        metrics.DB_POOL_IN_USE.inc()
        try:
            yield
        finally:
            metrics.DB_POOL_IN_USE.dec()
            self._slots.release()

    async def on_connection(self, work: Callable[[Session], T]) -> T:
        """`work(session)` in a worker thread; call it holding a `connection_slot`."""
        context = contextvars.copy_context()  # the caller's trace context reaches the thread
        return await asyncio.get_running_loop().run_in_executor(self._threads, context.run, self._run_blocking, work)

    @property
    def wait_seconds(self) -> float:
        """How long a unit of work waits for a free connection before `ALL_BUSY`."""
        return self._wait_seconds

    def _run_blocking(self, work: Callable[[Session], T]) -> T:
        """A pooled connection that a restart, failover or partition broke fails on first
        use; that work is tried once more on a new connection, and the idle connections
        as old as the broken one are given up (`_take`), so clients see no 503 per stale
        connection once PostgreSQL answers again."""
        for attempt in (1, 2):
            session, reused = self._take(fresh=attempt == 2)
            try:
                result = session.unit(work)
            except (InterfaceError, OSError, struct.error) as exc:
                _close_quietly(session.connection)
                self._broken(session)
                if attempt == 1 and reused and not _timed_out(exc):
                    continue
                raise DatabaseUnavailable(NOT_ANSWERING) from exc
            except DatabaseError as exc:
                _close_quietly(session.connection)
                if _connection_ended(exc):
                    self._broken(session)
                    if attempt == 1 and reused:
                        continue
                raise _ours(exc) from exc
            except BaseException:
                _close_quietly(session.connection)
                raise
            self._give_back(session)
            return result
        raise AssertionError("unreachable")

    @property
    def epoch(self) -> int:
        """How many breaks this pool has seen; a connection born before the last is suspect."""
        return self._epoch

    def _broken(self, session: Session) -> None:
        """`session` met a break. If it was made since the last one, this is news: every
        connection made until now is suspect. An older one failing says nothing of newer
        connections (they were made after the break it belongs to)."""
        with self._epoch_lock:
            if session.epoch == self._epoch:
                self._epoch += 1

    def _give_back(self, session: Session) -> None:
        if session.epoch < self._epoch:  # it was busy when a break was found: suspect too
            _close_quietly(session.connection)
        else:
            self._idle.put(session)

    def _take(self, *, fresh: bool = False) -> tuple[Session, bool]:
        """An idle connection made since the last break (older ones are closed on the way),
        or a new one; `fresh`: always a new one."""
        while not fresh:
            try:
                session = self._idle.get_nowait()
            except queue.Empty:
                break
            if session.epoch == self._epoch:
                return session, True
            _close_quietly(session.connection)
        epoch = self._epoch  # read before connecting: a break found meanwhile makes it suspect
        try:
            connection = self._connect()
        except (InterfaceError, OSError, struct.error) as exc:
            raise DatabaseUnavailable(NOT_ANSWERING) from exc
        except DatabaseError as exc:
            raise _ours(exc) from exc
        session = Session(connection, transaction_pooling=self._transaction_pooling,
                          timeouts_sql=self._timeouts_sql, epoch=epoch)
        return session, False

    def _connect(self) -> pg8000.native.Connection:
        connection = pg8000.native.Connection(**self._kwargs)
        raw_socket = getattr(connection, "_usock", None)
        if raw_socket is not None:
            raw_socket.settimeout(self._socket_timeout)
            if self._keepalive is not None:
                self._keepalive.apply(raw_socket)
        hook = self._before_first_query
        if hook is not None:  # threads race here only until the first one succeeds
            try:
                hook(connection)
            except BaseException:
                _close_quietly(connection)
                raise
            self._before_first_query = None
        return connection


def _ours(exc: DatabaseError) -> DatabaseUnavailable | DatabaseFailed:
    code = sqlstate(exc)
    if code in _CANNOT_WRITE_SQLSTATES:
        return DatabaseUnavailable(CANNOT_WRITE)
    if code.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES):
        return DatabaseUnavailable(NOT_ANSWERING, blocked_by_lock=code == LOCK_NOT_AVAILABLE)
    return DatabaseFailed(code)


def _connection_ended(exc: DatabaseError) -> bool:
    code = sqlstate(exc)
    return code in _CONNECTION_ENDED_SQLSTATES or code.startswith("08")


def sqlstate(exc: DatabaseError) -> str:
    fields = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return str(fields.get("C", ""))


def _close_quietly(connection: pg8000.native.Connection) -> None:
    try:
        connection.close()
    except Exception:
        pass


def _timed_out(exc: BaseException) -> bool:
    """A hung server, not a dropped connection: retrying would only double the wait.
    The socket's own timeout has no errno; ETIMEDOUT from the kernel (keepalive or
    retransmissions gave up) means the connection is dead, and a new one may work."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TimeoutError) and seen.errno is None:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
